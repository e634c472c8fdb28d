// The bridge wall: 92 tiles on one screen, counters, search, detail, and a strip of
// alerts that clear themselves when the site is back.
import {
  $, el, fold, clockTime, ago, ms, beep, whoami, getJson, postJson, fail, countdown, animate, reasonWords,
  connectLive, ServerClock, STATE_LABELS, STATE_ICONS, showConnection,
} from "/assets/common.js";

const clock = new ServerClock();
const sites = new Map(); // id → site view
const changedAt = new Map(); // id → server ms of its latest transition (the fading ring)
let timer = null;
let soundOn = false;
let slowRttMs = 300; // the snapshot says the configured threshold
let rollCall = null; // latest roll call summary
const messages = new Map(); // id → message summary (with `missing` sites)
const confirmed = new Set(); // sites that confirmed the latest roll call
const devices = new Map(); // id → active check of the site's video equipment
const serverAlerts = new Map(); // key → alert the service raised (presenter offline)
const dismissed = new Map(); // alert key → who marked it "Đã biết", and when
const past = []; // alerts that cleared or were marked, newest first
let raised = new Map(); // key → alert showing now (to notice the ones that clear)
let shape = ""; // what the tiles' layout depends on: refit when it changes
const RING_MS = 60_000;
const PAST_KEPT = 200;
const DENSITIES = 5;
const PROBLEM_ORDER = { offline: 0, degraded: 1, never_seen: 2, online: 3 };
const NAME_KEY = "diemcau.staffName";

/** "10:41" of a server time (the tile's "since"; the detail has the seconds). */
const hhmm = (at) => clockTime(at).slice(0, 5);

/** "Phường Phan Đình Phùng": the kind word, long and short (dense layouts show "P."). */
function nameParts(name) {
  const match = name.match(/^(Xã|Phường|Thị trấn)\s+(.*)$/);
  if (!match) return [name];
  const short = { "Xã": "X.", "Phường": "P.", "Thị trấn": "TT." }[match[1]];
  return [el("span", { class: "long" }, `${match[1]} `), el("span", { class: "short" }, `${short} `), match[2]];
}

function roleOf(id) {
  if (timer?.slot?.venue === id && ["running", "paused", "ready"].includes(timer.state)) return "ĐANG TRÌNH BÀY";
  if (timer?.next?.venue === id) return "TIẾP THEO";
  return "";
}

/** The tile's second line: what a person needs from across the room, per state. */
function status(site) {
  const word = el("span", { class: "state" }, `${STATE_ICONS[site.state]} ${STATE_LABELS[site.state]}`);
  if (site.state === "offline" || site.state === "degraded") {
    return [word, el("span", { class: "since", title: `Từ ${clockTime(site.since_ms)}` }, site.since_ms ? `từ ${hhmm(site.since_ms)}` : "")];
  }
  if (site.state === "online" && site.rtt_ms != null) {
    const slow = site.rtt_ms > slowRttMs;
    if (!slow) return [word, el("span", { class: "rtt", title: "RTT" }, ms(site.rtt_ms))];
    // Slow: a badge in amber, where an offline site says since when.
    return [word, el("span", { class: "rtt slow", title: `Đường truyền chậm (RTT trên ${slowRttMs} ms)` }, `chậm ${ms(site.rtt_ms)}`)];
  }
  return [word];
}

function tile(site) {
  const now = clock.now();
  const classes = ["tile", `state-${site.state}`];
  if (site.flapping) classes.push("flapping");
  if (confirmed.has(site.id)) classes.push("confirmed");
  const device = devices.get(site.id);
  if (device?.state === "down") classes.push("device-down");
  if (timer?.slot?.venue === site.id) classes.push("presenting");
  if (timer?.next?.venue === site.id) classes.push("on-deck");
  const age = now - (changedAt.get(site.id) ?? -Infinity);
  const attributes = { "data-site": site.id, "data-state": site.state, role: "button", tabindex: "0", title: site.name, onclick: () => showDetail(site.id) };
  if (age < RING_MS) {
    classes.push("changed");
    attributes.style = `--age: ${-Math.round(age)}ms`;
  }
  const role = roleOf(site.id);
  const extra = role || (device?.state === "down" ? "⚠ thiết bị" : "");
  return el(
    "div",
    { ...attributes, class: classes.join(" ") },
    el("div", { class: "name" }, ...nameParts(site.name)),
    el("div", { class: "status" }, ...status(site)),
    extra ? el("span", { class: "role" }, extra) : null,
  );
}

/** Every alert whose condition holds now, newest first. */
function currentAlerts() {
  const alerts = [];
  const nameOf = (id) => sites.get(id)?.name ?? id;
  const covered = new Set();
  for (const [key, alert] of serverAlerts) {
    if (sites.get(alert.site)?.state === "online") continue; // the site is back
    alerts.push({ key, ...alert });
    covered.add(alert.site);
  }
  for (const site of sites.values()) {
    if (site.state !== "offline" || covered.has(site.id)) continue;
    const role = roleOf(site.id);
    alerts.push({
      key: `offline:${site.id}:${site.since_ms ?? 0}`,
      site: site.id,
      kind: "offline",
      at_ms: site.since_ms ?? 0,
      text: `${site.name} mất kết nối từ ${clockTime(site.since_ms)}${role ? ` — ${role.toLowerCase()}` : ""}`,
    });
  }
  for (const [id, device] of devices) {
    if (device.state !== "down") continue;
    alerts.push({
      key: `device:${id}:${device.since_ms ?? 0}`,
      site: id,
      kind: "device",
      at_ms: device.since_ms ?? 0,
      text: `${nameOf(id)}: thiết bị cầu không phản hồi từ ${clockTime(device.since_ms)}`,
    });
  }
  return alerts.sort((a, b) => b.at_ms - a.at_ms);
}

function rememberPast(alert, outcome) {
  past.unshift({ ...alert, outcome });
  past.length = Math.min(past.length, PAST_KEPT);
}

function drawAlerts() {
  const now = currentAlerts();
  const showing = new Map(now.filter((a) => !dismissed.has(a.key)).map((a) => [a.key, a]));
  for (const [key, alert] of raised) {
    if (!showing.has(key) && !dismissed.has(key)) rememberPast(alert, `tự hết lúc ${clockTime(clock.now())} (điểm cầu đã trở lại)`);
  }
  raised = showing;
  const count = $("#alert-count");
  count.className = `alert-count ${showing.size ? "some" : "none"}`;
  count.textContent = showing.size ? `⚠ ${showing.size} cảnh báo` : "✓ Không có cảnh báo";
  $("#alert-list").replaceChildren(
    ...[...showing.values()].map((alert) =>
      el("div", { class: `wall-alert ${alert.kind}`, "data-alert": alert.key, role: "alert" },
        el("span", { title: alert.text }, `⚠ ${alert.text}`),
        el("button", { type: "button", onclick: () => dismiss(alert) }, "Đã biết"),
      ),
    ),
  );
  $("#past-open").textContent = `Cảnh báo đã qua (${past.length})`;
  if (!$("#past").classList.contains("hidden")) drawPast();
}

/** Marks an alert "Đã biết": stored with the name typed on this wall, then off the strip. */
async function dismiss(alert) {
  const name = $("#staff-name").value.trim();
  const label = $(".staff-name");
  if (!name) {
    label.classList.add("needed");
    $("#message-status").textContent = "Nhập tên người trực (ô “Người trực”) rồi bấm “Đã biết”: việc xử lý được ghi lại theo tên.";
    $("#staff-name").focus();
    return;
  }
  label.classList.remove("needed");
  try {
    const answer = await postJson("/api/alerts/dismissals", { alert: alert.key, site: alert.site, text: alert.text, name });
    onDismissal(answer.dismissal);
    $("#message-status").textContent = "";
  } catch (error) {
    $("#message-status").textContent = `Chưa ghi được “Đã biết”: ${error.message}`;
  }
}

function onDismissal(dismissal) {
  if (dismissed.has(dismissal.alert)) return;
  dismissed.set(dismissal.alert, dismissal);
  const alert = raised.get(dismissal.alert) ?? { key: dismissal.alert, site: dismissal.site, text: dismissal.text, at_ms: dismissal.at_ms };
  raised.delete(dismissal.alert);
  rememberPast(alert, `Đã biết: ${dismissal.name} (${dismissal.by}) lúc ${clockTime(dismissal.at_ms)}`);
  drawAlerts();
}

/** After a reload: the outages of the last day that ended, and what was marked, from the service. */
async function loadPastAlerts() {
  for (const d of (await getJson("/api/alerts/dismissals")).dismissals) dismissed.set(d.alert, d);
  const marked = (d) => `Đã biết: ${d.name} (${d.by}) lúc ${clockTime(d.at_ms)}`;
  const ended = new Set();
  for (const o of (await getJson("/api/alerts/past")).past) {
    const key = `offline:${o.site}:${o.from_ms}`;
    ended.add(key);
    const d = dismissed.get(key);
    const outcome = `tự hết lúc ${clockTime(o.to_ms)} (điểm cầu đã trở lại)${d ? ` · ${marked(d)}` : ""}`;
    past.push({ key, site: o.site, at_ms: o.from_ms, text: null, outcome }); // named once the sites are in
  }
  for (const d of dismissed.values()) {
    if (!ended.has(d.alert)) past.push({ key: d.alert, site: d.site, at_ms: d.at_ms, text: d.text, outcome: marked(d) });
  }
  past.sort((a, b) => b.at_ms - a.at_ms);
  past.length = Math.min(past.length, PAST_KEPT);
}

function drawPast() {
  const panel = $("#past");
  panel.replaceChildren(
    el("button", { type: "button", onclick: () => panel.classList.add("hidden") }, "Đóng ✕"),
    el("h2", {}, "Cảnh báo đã qua"),
    past.length
      ? el("ol", { class: "past-list" }, past.map((a) =>
          el("li", {}, `${clockTime(a.at_ms)} — ${a.text ?? `${sites.get(a.site)?.name ?? a.site} mất kết nối từ ${clockTime(a.at_ms)}`}`, el("span", { class: "outcome" }, a.outcome))))
      : el("p", { class: "muted" }, "Chưa có cảnh báo nào kết thúc."),
  );
}

/** Picks the first density at which every tile is on screen (no scrolling). */
function fit() {
  const box = $("#tiles");
  for (let density = 0; density < DENSITIES; density++) {
    box.dataset.density = String(density);
    if (box.scrollHeight <= box.clientHeight + 1) return;
  }
}

function render() {
  const query = fold($("#search").value.trim());
  const all = [...sites.values()];
  // Names and codes first; a district name finds its communes when no name matches.
  let list = all.filter((s) => !query || fold(`${s.name} ${s.id}`).includes(query));
  if (query && list.length === 0) list = all.filter((s) => fold(s.former_district).includes(query));
  const counts = { total: sites.size, online: 0, degraded: 0, offline: 0, never_seen: 0 };
  for (const s of sites.values()) counts[s.state] += 1;
  $("#counters").replaceChildren(
    el("span", { class: "counter" }, "Tổng", el("b", {}, String(counts.total))),
    ...["online", "degraded", "offline", "never_seen"].map((state) =>
      el("span", { class: `counter state-${state}${counts[state] && state === "offline" ? " some" : ""}`, id: `count-${state}` }, `${STATE_ICONS[state]} ${STATE_LABELS[state]}`, el("b", {}, String(counts[state]))),
    ),
  );
  const groups = new Map();
  if ($("#sort").value === "problems") {
    list.sort((a, b) => PROBLEM_ORDER[a.state] - PROBLEM_ORDER[b.state] || (b.since_ms ?? 0) - (a.since_ms ?? 0));
    groups.set("Sự cố trước", list);
  } else {
    for (const s of list) {
      if (!groups.has(s.former_district)) groups.set(s.former_district, []);
      groups.get(s.former_district).push(s);
    }
  }
  $("#tiles").replaceChildren(
    ...[...groups].map(([name, members]) =>
      el("section", { class: "group" },
        el("h2", { title: name },
          el("span", { class: "long" }, `${name} (${members.length})`),
          el("span", { class: "short" }, `${name.replace(/^Huyện /, "").replace(/^Thành phố /, "TP ")} (${members.length})`)),
        el("div", { class: "grid" }, members.map(tile))),
    ),
  );
  // Tiles keep their size per density: refit only when what they depend on changes.
  const newShape = `${list.length}/${groups.size}/${innerWidth}x${innerHeight}`;
  if (newShape !== shape) {
    shape = newShape;
    fit();
  }
  drawAlerts();
}

let renderQueued = false;
/** Redraws soon, once for a burst of frames (a links frame every probe interval). */
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  setTimeout(() => {
    renderQueued = false;
    render();
  }, 100);
}

async function showDetail(id) {
  const panel = $("#detail");
  panel.classList.remove("hidden");
  panel.replaceChildren(el("p", {}, "Đang tải…"));
  try {
    const s = await getJson(`/api/sites/${id}`);
    const now = clock.now();
    panel.replaceChildren(
      el("button", { type: "button", onclick: () => panel.classList.add("hidden") }, "Đóng ✕"),
      el("h2", {}, s.name),
      el("p", {}, el("span", { class: `badge state-${s.state}` }, `${STATE_ICONS[s.state]} ${STATE_LABELS[s.state]}`), ` từ ${clockTime(s.since_ms)}`),
      el("dl", {},
        el("dt", {}, "Mã"), el("dd", {}, s.id),
        el("dt", {}, "Huyện cũ"), el("dd", {}, s.former_district),
        el("dt", {}, "Liên hệ"), el("dd", {}, [s.contact_name, s.contact_phone].filter(Boolean).join(" · ") || "—"),
        el("dt", {}, "Lần cuối nghe thấy"), el("dd", {}, `${clockTime(s.last_seen_ms)} (${ago(s.last_seen_ms, now)})`),
        el("dt", {}, "RTT (trung vị)"), el("dd", {}, ms(s.rtt_ms)),
        el("dt", {}, "Jitter"), el("dd", {}, ms(s.jitter_ms)),
        el("dt", {}, "Gói thăm dò trễ"), el("dd", {}, `${s.stalled_probes} / ${s.probes}`),
        el("dt", {}, "Số lần kết nối lại"), el("dd", {}, String(s.reconnects)),
        el("dt", {}, "Thời gian trực tuyến"), el("dd", {}, s.uptime == null ? "—" : `${(s.uptime * 100).toFixed(1)} %`),
        el("dt", {}, "Lệch đồng hồ"), el("dd", {}, s.clock_offset_ms == null ? "—" : `${Math.round(s.clock_offset_ms)} ms`),
        el("dt", {}, "Thiết bị cầu (codec)"), el("dd", { id: "device-state" }, deviceText(s.device)),
        el("dt", {}, "Chập chờn lặp lại"), el("dd", {}, s.flapping ? "Có (≥ 3 lần mất kết nối trong 10 phút)" : "Không"),
      ),
      el("h3", {}, "Lịch sử trạng thái"),
      el("table", {},
        el("thead", {}, el("tr", {}, el("th", {}, "Lúc"), el("th", {}, "Từ → sang"), el("th", {}, "Lý do"))),
        el("tbody", {}, s.transitions.map((t) =>
          el("tr", {}, el("td", {}, clockTime(t.at_ms)), el("td", {}, `${STATE_LABELS[t.from]} → ${STATE_LABELS[t.to]}`), el("td", { title: t.reason }, reasonWords(t.reason))),
        )),
      ),
    );
  } catch (error) {
    panel.replaceChildren(el("p", {}, `Không tải được: ${error.message}`));
  }
}

function drawRollCall() {
  $("#roll-call-count").textContent = rollCall
    ? `Điểm danh lúc ${clockTime(rollCall.sent_ms)}: ${confirmed.size}/${rollCall.recipients} đã xác nhận`
    : "Chưa điểm danh";
}

/** Sent messages, each with who has not acknowledged it yet. */
function drawMessages() {
  const recent = [...messages.values()].slice(-5).reverse();
  $("#sent").replaceChildren(...recent.map((m) => {
    const names = m.missing.map((id) => sites.get(id)?.name ?? id);
    return el("span", { class: `notice ${names.length ? "pending" : ""}`, title: names.join(", ") },
      `“${m.text.slice(0, 40)}” — ${names.length ? `${names.length}/${m.recipients} chưa xác nhận` : "tất cả đã xác nhận"}`);
  }));
}

async function loadNotices() {
  const { notices } = await getJson("/api/messages");
  for (const n of notices) if (n.kind === "message") messages.set(n.id, n);
  drawMessages();
  const { roll_call } = await getJson("/api/rollcall");
  rollCall = roll_call;
  confirmed.clear();
  for (const c of roll_call?.confirmed ?? []) confirmed.add(c.site);
  drawRollCall();
}

/** Both kinds of evidence side by side: the PC's socket and the hall's equipment. */
function deviceText(device) {
  if (!device) return "không kiểm tra (chưa khai báo địa chỉ probe)";
  if (device.state === "up") return `phản hồi (${Math.round(device.last_connect_ms)} ms, ${clockTime(device.last_check_ms)})`;
  if (device.state === "down") return `KHÔNG phản hồi — ${device.consecutive_failures} lần liên tiếp (${device.last_error ?? ""})`;
  return "đang kiểm tra…";
}

function onSiteChange(site, transition) {
  sites.set(site.id, site);
  if (transition) changedAt.set(site.id, transition.at_ms ?? clock.now());
  if (transition?.to === "offline" && soundOn) beep(roleOf(site.id) ? 4 : 2);
}

function drawTimer() {
  const box = $("#timer-mini");
  if (!timer || timer.state === "idle") {
    box.textContent = "";
    return;
  }
  const c = countdown(timer, clock.now());
  box.replaceChildren(
    `Phần ${timer.slot.order}: ${timer.slot.unit} — `,
    el("span", { class: `countdown phase-${c.phase}`, id: "countdown" }, c.text),
    " ",
    el("span", { class: `timer-state state-${c.state}`, id: "timer-state" }, c.words),
  );
}

async function main() {
  try {
    await whoami();
  } catch (error) {
    fail(error.message);
    return;
  }
  $("#search").addEventListener("input", render);
  $("#sort").addEventListener("change", render);
  addEventListener("resize", scheduleRender);
  $("#sound").addEventListener("click", (event) => {
    soundOn = !soundOn;
    event.target.textContent = soundOn ? "Âm báo: bật" : "Âm báo: tắt";
    if (soundOn) beep(1);
  });
  $("#staff-name").value = sessionStorage.getItem(NAME_KEY) ?? "";
  $("#staff-name").addEventListener("change", (event) => sessionStorage.setItem(NAME_KEY, event.target.value.trim()));
  $("#past-open").addEventListener("click", () => {
    drawPast();
    $("#past").classList.remove("hidden");
  });
  $("#roll-call-start").addEventListener("click", async () => {
    try {
      await postJson("/api/rollcall", { deadline_seconds: 300 });
    } catch (error) {
      $("#message-status").textContent = `Chưa điểm danh được: ${error.message}`;
    }
  });
  $("#message-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const answer = await postJson("/api/messages", { text: $("#message-text").value, to: $("#message-to").value, level: $("#message-level").value });
      $("#message-status").textContent = `Đã gửi tới ${answer.notice.recipients} điểm cầu (${answer.delivered_now} đang trực tuyến).`;
      $("#message-text").value = "";
    } catch (error) {
      $("#message-status").textContent = `Chưa gửi được: ${error.message}`;
    }
  });
  await loadNotices();
  await loadPastAlerts();
  connectLive({
    clock,
    onStatus: (status) => {
      showConnection(status);
      document.body.classList.toggle("stale", status !== "online");
    },
    onSnapshot: (snapshot) => {
      sites.clear();
      for (const s of snapshot.sites) {
        sites.set(s.id, s);
        if (s.since_ms && !changedAt.has(s.id) && s.state !== "never_seen") changedAt.set(s.id, s.since_ms);
      }
      timer = snapshot.timer;
      slowRttMs = snapshot.slow_rtt_ms ?? slowRttMs;
      devices.clear();
      for (const [id, check] of Object.entries(snapshot.devices ?? {})) devices.set(id, check);
      const select = $("#message-to");
      if (select.options.length === 3) {
        const districts = [...new Set(snapshot.sites.map((s) => s.former_district))];
        select.append(...districts.map((d) => el("option", { value: `district:${d}` }, d)));
      }
      render();
    },
    onFrame: (frame) => {
      if (frame.type === "site") onSiteChange(frame.site, frame.transition);
      else if (frame.type === "links") {
        for (const link of frame.links) {
          const s = sites.get(link.id);
          if (s) Object.assign(s, link);
        }
      } else if (frame.type === "timer") timer = frame;
      else if (frame.type === "device") devices.set(frame.site, frame.device);
      else if (frame.type === "notice" && frame.notice.kind === "roll_call") {
        rollCall = frame.notice;
        confirmed.clear();
        drawRollCall();
      } else if (frame.type === "notice" && frame.notice.kind === "message") {
        messages.set(frame.notice.id, frame.notice);
        drawMessages();
      } else if (frame.type === "ack" && frame.notice === rollCall?.id) {
        confirmed.add(frame.site);
        drawRollCall();
      } else if (frame.type === "ack" && messages.has(frame.notice)) {
        const m = messages.get(frame.notice);
        m.missing = m.missing.filter((id) => id !== frame.site);
        drawMessages();
      } else if (frame.type === "alert") {
        serverAlerts.set(`${frame.kind}:${frame.site}:${frame.at_ms}`, { site: frame.site, kind: "offline", at_ms: frame.at_ms, text: frame.message });
      } else if (frame.type === "dismissal") onDismissal(frame);
      scheduleRender();
    },
  });
  animate(drawTimer, clock);
  setInterval(render, 5000); // ages and rings wear off
}

main();
