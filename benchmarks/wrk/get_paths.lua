-- GET requests in turn. Environment: WRK_REQUESTS, a file of "KEY PATH" lines ("- PATH" sends no
-- Authorization header), taken in turn from a random start per thread.
dofile(os.getenv("WRK_DIR") .. "/report.lua")
local reqs = {}
for line in io.lines(os.getenv("WRK_REQUESTS")) do
  local key, path = string.match(line, "^(%S+) (%S+)$")
  reqs[#reqs + 1] = {key, path}
end
local i = 0
init = function(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  i = math.random(1, #reqs)
end
request = function()
  i = i % #reqs + 1
  local headers = {}
  if reqs[i][1] ~= "-" then headers["Authorization"] = "Bearer " .. reqs[i][1] end
  return wrk.format("GET", reqs[i][2], headers)
end
