// The settings page: email preferences and webhook endpoints, through the same /v1 API as everything else.
(function () {
  "use strict";
  const {api, el} = window.videogenPage;
  const when = (ts) => (ts ? new Date(ts * 1000).toLocaleString() : "");

  // Email preferences: each box saves itself.
  const prefs = document.getElementById("prefs");
  async function loadPrefs() {
    const p = await api("/notification_preferences");
    for (const box of prefs.querySelectorAll("input")) box.checked = !!p.email[box.name];
  }
  prefs.addEventListener("change", async (event) => {
    await api("/notification_preferences", {method: "POST", body: JSON.stringify({email: {[event.target.name]: event.target.checked}})});
    document.getElementById("prefs-saved").hidden = false;
  });

  // Webhook endpoints, each with its delivery log.
  const list = document.getElementById("endpoints");
  const secret = document.getElementById("secret");
  function showSecret(endpoint) {
    secret.textContent = `Signing secret for ${endpoint.name} (shown once, keep it now): ${endpoint.signing_secret}`;
    secret.hidden = false;
  }
  async function deliveries(endpoint, box) {
    const page = await api(`/webhook_endpoints/${endpoint.id}/deliveries?limit=20`);
    box.replaceChildren();
    if (!page.data.length) box.append(el("p", {class: "muted"}, "No deliveries yet."));
    for (const d of page.data) {
      const row = el("div", {class: "delivery", "data-id": d.id});
      const tries = d.attempts.map((a) => a.status_code ?? (a.error || "no answer")).join(", ");
      row.append(el("span", {class: `status ${d.status}`}, d.status), el("span", {}, ` ${d.event_type} · ${when(d.created_at)} · attempts: ${tries || "none yet"} `));
      const replay = el("button", {type: "button", class: "link replay"}, "Replay");
      replay.addEventListener("click", async () => { await api(`/webhook_endpoints/${endpoint.id}/deliveries/${d.id}/replay`, {method: "POST"}); deliveries(endpoint, box); });
      row.append(replay);
      box.append(row);
    }
  }
  function render(endpoint) {
    const item = el("li", {class: "endpoint card", id: endpoint.id});
    item.append(el("strong", {}, endpoint.name), el("div", {class: "muted"}, `${endpoint.url} · ${endpoint.event_types.join(", ")} · ${endpoint.status}${endpoint.disabled_reason ? ": " + endpoint.disabled_reason : ""}`));
    const result = el("span", {class: "muted result"});
    const log = el("div", {class: "deliveries"});
    const buttons = [
      ["Send test", async () => { const t = await api(`/webhook_endpoints/${endpoint.id}/test`, {method: "POST", body: JSON.stringify({event_type: endpoint.event_types[0]})}); result.textContent = ` test: ${t.success ? "delivered" : "failed"} (${t.status_code})`; deliveries(endpoint, log); }],
      ["Rotate secret", async () => showSecret(await api(`/webhook_endpoints/${endpoint.id}/rotate_secret`, {method: "POST"}))],
      ["Deliveries", () => deliveries(endpoint, log)],
      ["Delete", async () => { await api(`/webhook_endpoints/${endpoint.id}`, {method: "DELETE"}); item.remove(); }],
    ];
    const bar = el("div", {class: "actions"});
    for (const [label, action] of buttons) {
      const b = el("button", {type: "button", class: "link"}, label);
      b.addEventListener("click", () => action().catch((err) => { result.textContent = " " + err.message; }));
      bar.append(b);
    }
    bar.append(result);
    item.append(bar, log);
    list.append(item);
  }
  async function loadEndpoints() {
    list.replaceChildren();
    for (const e of (await api("/webhook_endpoints?limit=100")).data) render(e);
  }
  document.getElementById("new-endpoint").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const error = document.getElementById("endpoint-error");
    error.hidden = true;
    const types = [...form.querySelectorAll("input[name=event_types]:checked")].map((b) => b.value);
    try {
      const made = await api("/webhook_endpoints", {method: "POST", body: JSON.stringify({name: form.name.value, url: form.url.value, event_types: types})});
      showSecret(made);
      render(made);
      form.reset();
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
    }
  });
  loadPrefs();
  loadEndpoints();
})();
