// The generations page: lists the user's videos, submits new ones, and follows the notification log
// over /ws/events (resuming from the last seq seen) so every card updates without a reload.
(function () {
  "use strict";
  const {api, el} = window.videogenPage;
  const list = document.getElementById("videos");
  const empty = document.getElementById("empty");
  const live = document.getElementById("live");
  const form = document.getElementById("create-form");
  const formError = document.getElementById("form-error");
  const credits = document.getElementById("credits");
  const videos = new Map(); // id -> latest video object
  let lastSeq = window.VIDEOGEN.lastSeq || 0;

  // The notification centre: outcomes (not every step), unread after the user's read seq, kept by the server so
  // it survives reloads; marking read in one tab reaches the others through their sockets.
  const NOTEWORTHY = ["video.completed", "video.failed", "video.cancelled", "video.moderation_blocked",
    "video.held_for_review", "video.appeal_decided", "webhook_endpoint.disabled"];
  const TITLES = {"video.completed": "Your video is ready", "video.failed": "Your video failed",
    "video.cancelled": "Your video was cancelled", "video.moderation_blocked": "Moderation blocked your video",
    "video.held_for_review": "Your video waits for a moderator", "video.appeal_decided": "Your appeal was decided",
    "webhook_endpoint.disabled": "A webhook endpoint was disabled"};
  const bell = document.getElementById("bell");
  const unreadBadge = document.getElementById("unread");
  const inbox = document.getElementById("inbox");
  const inboxList = document.getElementById("inbox-list");
  const inboxEmpty = document.getElementById("inbox-empty");
  const toasts = document.getElementById("toasts");
  let readSeq = 0;
  const shown = new Set(); // seqs in the inbox list

  function setUnread(count) {
    unreadBadge.textContent = String(count);
    unreadBadge.classList.toggle("unread", count > 0);
  }

  function describe(note) {
    const what = TITLES[note.event] || note.event;
    const prompt = note.data && note.data.prompt ? `: ${note.data.prompt.slice(0, 60)}` : "";
    return what + prompt;
  }

  function addToInbox(note) {
    if (!NOTEWORTHY.includes(note.event) || shown.has(note.seq)) return;
    shown.add(note.seq);
    const item = el("li", {"data-seq": String(note.seq), class: note.seq > readSeq ? "unread" : ""}, describe(note));
    inboxList.prepend(item);
    inboxEmpty.hidden = true;
  }

  function toast(text) {
    const t = el("div", {class: "toast", role: "status"}, text);
    toasts.append(t);
    setTimeout(() => t.remove(), 6000);
  }

  function applyRead(seq, count) {
    readSeq = Math.max(readSeq, seq);
    setUnread(count);
    for (const item of inboxList.children) item.classList.toggle("unread", Number(item.dataset.seq) > readSeq);
  }

  async function loadInbox() {
    const page = await api(`/notifications?after_seq=${Math.max(0, lastSeq - 100)}&limit=100`);
    readSeq = page.read_seq;
    page.data.forEach(addToInbox);
    applyRead(page.read_seq, page.unread_count);
  }

  bell.addEventListener("click", () => {
    inbox.hidden = !inbox.hidden;
    bell.setAttribute("aria-expanded", String(!inbox.hidden));
  });
  document.getElementById("mark-read").addEventListener("click", async () => {
    const state = await api("/notifications/read", {
      method: "POST", body: JSON.stringify({up_to_seq: lastSeq}),
    });
    applyRead(state.read_seq, state.unread_count);
  });

  function render(video) {
    videos.set(video.id, video);
    let card = document.getElementById(video.id);
    if (!card) {
      card = el("li", {id: video.id, class: "video card"});
      list.prepend(card);
    }
    card.dataset.status = video.status;
    card.replaceChildren();
    const head = el("div", {class: "head"});
    head.append(el("span", {class: "status " + video.status}, video.status.replace("_", " ")));
    head.append(el("span", {class: "meta"}, `${video.model} · ${video.size} · ${video.seconds}s`));
    card.append(head);
    card.append(el("p", {class: "prompt"}, video.prompt));
    if (video.status === "queued" || video.status === "in_progress") {
      const bar = el("progress", {max: "100", value: String(video.progress || 0)});
      card.append(bar);
      let extra = video.queue_position ? ` · position ${video.queue_position} in queue` : "";
      if (video.status === "queued" && video.estimated_start_at) {
        const secs = Math.max(0, Math.round(video.estimated_start_at - Date.now() / 1000));
        extra += secs > 0 ? ` · starts in ~${secs}s` : " · starting";
      }
      card.append(el("span", {class: "muted"}, `${video.progress || 0}%${extra}`));
      const cancel = el("button", {class: "link cancel"}, "Cancel");
      cancel.onclick = () => act(video.id, "/cancel", "POST");
      card.append(cancel);
    } else if (video.status === "completed") {
      const player = el("video", {controls: "", loop: "", muted: "", playsinline: "",
        src: `/v1/videos/${video.id}/content`, poster: `/v1/videos/${video.id}/content?variant=thumbnail`});
      card.append(player);
      card.append(el("a", {href: `/v1/videos/${video.id}/content`, download: `${video.id}.mp4`}, "Download"));
    } else if ((video.status === "failed" || video.status === "cancelled") && video.error) {
      card.append(el("p", {class: "error"}, `${video.error.code}: ${video.error.message}`));
      if (video.error.code === "moderation_blocked") {
        // One appeal per video: a moderator looks at it beside the decision; approved, it runs again.
        const appeal = el("button", {class: "link appeal"}, "Appeal");
        appeal.onclick = () => appealVideo(video.id, card, appeal);
        card.append(appeal);
      }
    }
    if (["completed", "failed", "cancelled"].includes(video.status)) {
      const del = el("button", {class: "link delete"}, "Delete");
      del.onclick = () => act(video.id, "", "DELETE");
      card.append(del);
    }
    empty.hidden = videos.size > 0;
  }

  async function act(id, suffix, method) {
    try {
      const body = await api(`/videos/${id}${suffix}`, {method});
      if (body.deleted) {
        videos.delete(id);
        document.getElementById(id)?.remove();
        empty.hidden = videos.size > 0;
      } else {
        render(body);
      }
    } catch (err) {
      alert(err.message);
    }
  }

  async function appealVideo(id, card, button) {
    const message = prompt("Why should a moderator look at this again? (optional)");
    if (message === null) return;
    try {
      const appeal = await api(`/videos/${id}/appeal`, {method: "POST", body: JSON.stringify({message})});
      button.remove();
      card.append(el("p", {class: "muted appeal-status"}, `Appeal ${appeal.status}: a moderator will look at it.`));
    } catch (err) {
      button.remove();
      card.append(el("p", {class: "error appeal-status"}, err.message));
    }
  }

  async function refresh(id) {
    try { render(await api(`/videos/${id}`)); } catch (err) { /* deleted meanwhile */ }
  }

  async function loadCredits() {
    try {
      const c = await api("/credits?limit=1");
      credits.textContent = c.metered
        ? `${c.available} credits available (${c.allowance_remaining} left of today's ${c.daily_allowance}, balance ${c.balance}) · ${c.tier} tier`
        : `${c.tier} tier · not metered`;
    } catch (err) { /* shown again on the next refresh */ }
  }

  async function loadAll() {
    // The newest 100, rendered oldest first so that each prepends above the last.
    const page = await api("/videos?limit=100&order=desc");
    page.data.reverse().forEach(render);
    empty.hidden = videos.size > 0;
  }

  // Progress is not a notification (it changes every step): poll only the cards still moving, running ones
  // every second and waiting ones every 5 s (their ETA moves slowly), which keeps within the rate limit.
  let ticks = 0;
  setInterval(() => {
    ticks += 1;
    for (const v of videos.values()) {
      if (v.status === "in_progress" || (v.status === "queued" && ticks % 5 === 0)) refresh(v.id);
    }
  }, 1000);

  function connect() {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${proto}://${location.host}/ws/events?last_seq=${lastSeq}`);
    ws.onopen = () => { live.textContent = "live"; live.classList.add("on"); };
    ws.onmessage = (msg) => {
      const data = JSON.parse(msg.data);
      if (data.type === "gap") { // too far behind for a replay: the list itself is the truth
        lastSeq = Math.max(lastSeq, data.skipped_to_seq);
        loadAll();
        return;
      }
      if (data.type === "read") { applyRead(data.read_seq, data.unread_count); return; } // another tab
      if (data.type === "progress") { // ephemeral: moves the bar; the video object stays the truth
        const v = videos.get(data.data.id);
        if (v && v.status === "in_progress") render(Object.assign({}, v, {progress: data.data.progress}));
        return;
      }
      if (data.type !== "notification" || data.seq <= lastSeq) return; // dedupe by seq
      lastSeq = data.seq;
      if (data.data && data.data.object === "video") render(data.data);
      if (NOTEWORTHY.includes(data.event)) {
        addToInbox(data);
        if (data.seq > readSeq) setUnread(Number(unreadBadge.textContent) + 1);
        toast(describe(data));
      }
      if (["video.completed", "video.failed", "video.cancelled"].includes(data.event)) loadCredits();
    };
    ws.onclose = () => {
      live.textContent = "reconnecting"; live.classList.remove("on");
      setTimeout(connect, 1000); // resumes from lastSeq, so nothing is missed
    };
  }

  // One Idempotency-Key per thing the user means to create: kept across a failed try (so clicking again after a
  // network error cannot make a second video), new once it succeeded or the form changed.
  let createKey = null;
  form.addEventListener("input", () => { createKey = null; });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    formError.hidden = true;
    const data = new FormData(form);
    if (!data.get("input_reference")?.size) data.delete("input_reference");
    const button = document.getElementById("submit");
    button.disabled = true;
    try {
      createKey = createKey || crypto.randomUUID();
      render(await api("/videos", {method: "POST", body: data, headers: {"Idempotency-Key": createKey}}));
      createKey = null;
      form.reset();
      loadCredits();
    } catch (err) {
      formError.textContent = err.message;
      formError.hidden = false;
    } finally {
      button.disabled = false;
    }
  });

  loadCredits();
  Promise.all([loadAll(), loadInbox()]).then(connect);
})();
