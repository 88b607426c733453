-- POST one JSON body to wrk's URL. Environment: WRK_BODY (the JSON); WRK_KEYS (optional: a file of bearer
-- keys, one a line, taken in turn from a random start per thread, so the load comes from many users).
dofile(os.getenv("WRK_DIR") .. "/report.lua")
local body = os.getenv("WRK_BODY")
local keys = {}
if os.getenv("WRK_KEYS") then
  for line in io.lines(os.getenv("WRK_KEYS")) do keys[#keys + 1] = line end
end
local i = 0
init = function(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  i = math.random(1, math.max(1, #keys))
end
request = function()
  local headers = {["Content-Type"] = "application/json"}
  if #keys > 0 then
    i = i % #keys + 1
    headers["Authorization"] = "Bearer " .. keys[i]
  end
  return wrk.format("POST", nil, headers, body)
end
