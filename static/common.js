// What every page of the site shares: calls to the /v1 API with the session (and its CSRF token), and building
// elements from text (textContent: nothing a user typed is parsed as HTML).
window.videogenPage = (function () {
  "use strict";
  function csrf() {
    const m = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }
  // A string body is JSON; any other body (FormData) sets its own Content-Type.
  async function api(path, options = {}) {
    const json = typeof options.body === "string" ? {"Content-Type": "application/json"} : {};
    const headers = Object.assign({"X-CSRFToken": csrf()}, json, options.headers || {});
    const resp = await fetch("/v1" + path, Object.assign({credentials: "same-origin"}, options, {headers}));
    const body = resp.headers.get("content-type")?.includes("json") ? await resp.json() : null;
    if (!resp.ok) throw new Error(body?.error?.message || resp.statusText);
    return body;
  }
  function el(tag, attrs = {}, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  return {api, el};
})();
