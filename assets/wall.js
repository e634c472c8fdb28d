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
const incidents = new Map(); // incident id → incident (open ones and those closed lately)
const excused = new Map(); // site id → who excused it, when and why
let detailSite = null; // the site whose detail panel is open
let incidentCount = { open: 0, untaken: 0 }; // shown beside the alerts' count
let raised = new Map(); // key → alert showing now (to notice the ones that clear)
let shape = ""; // what the tiles' layout depends on: refit when it changes
const RING_MS = 60_000;
const PAST_KEPT = 200;
const DENSITIES = 5;
const PROBLEM_ORDER = { offline: 0, degraded: 1, never_seen: 2, online: 3 };
const NAME_KEY = "diemcau.staffName";

/** "10:41" of a server time (the tile's "since"; the detail has the seconds). */
const hhmm = (at) => clockTime(at).slice(0, 5);

/** The site's open incident, if any. */
function openIncident(id) {
  for (const incident of incidents.values()) if (incident.site === id && incident.resolved_ms == null) return incident;
  return null;
}

/** Who is on an incident now (the latest take: a hand-over is another take). */
const takerOf = (incident) => incident?.takers?.at(-1) ?? null;
/** Nobody took it in time: raised again until someone does. */
const untaken = (incident) => incident && incident.resolved_ms == null && !takerOf(incident) && incident.raised_again_ms != null;

const CAUSE_WORDS = { offline: "mất kết nối", degraded: "kết nối kém kéo dài", equipment: "thiết bị cầu không phản hồi" };

/** The name typed in "Người trực", or a prompt to type it (the acts are recorded by name). */
function staffName(what) {
  const name = $("#staff-name").value.trim();
  const label = $(".staff-name");
  if (!name) {
    label.classList.add("needed");
    $("#message-status").textContent = `Nhập tên người trực (ô “Người trực”) rồi bấm “${what}”: việc xử lý được ghi lại theo tên.`;
    $("#staff-name").focus();
    return null;
  }
  label.classList.remove("needed");
  sessionStorage.setItem(NAME_KEY, name);
  return name;
}

/** "Tôi xử lý": this person takes the incident; every wall then shows who is on it. */
async function takeIncident(incident) {
  const name = staffName("Tôi xử lý");
  if (!name) return;
  try {
    const answer = await postJson(`/api/incidents/${incident.id}/take`, { name });
    onIncident(answer.incident);
    $("#message-status").textContent = `${name} đang xử lý ${sites.get(incident.site)?.name ?? incident.site}.`;
  } catch (error) {
    $("#message-status").textContent = `Chưa nhận được việc: ${error.message}`;
  }
}

async function noteIncident(incident, input) {
  const name = staffName("Ghi chú");
  const text = input.value.trim();
  if (!name || !text) return;
  try {
    const answer = await postJson(`/api/incidents/${incident.id}/notes`, { name, text });
    input.value = "";
    onIncident(answer.incident);
  } catch (error) {
    $("#message-status").textContent = `Chưa ghi được ghi chú: ${error.message}`;
  }
}

async function excuseSite(id, isExcused, reasonInput) {
  const name = staffName(isExcused ? "Vắng có lý do" : "Bỏ đánh dấu vắng");
  if (!name) return;
  try {
    const answer = await postJson("/api/excusals", { site: id, excused: isExcused, name, reason: reasonInput?.value ?? "" });
    onExcusal(answer.excusal);
  } catch (error) {
    $("#message-status").textContent = `Chưa ghi được: ${error.message}`;
  }
}

function onIncident(incident) {
  const known = incidents.get(incident.id);
  // Frames may arrive after the answer: the one with more facts wins.
  const facts = (i) => i.takers.length + i.notes.length + (i.resolved_ms != null) + (i.raised_again_ms != null) + i.flaps + (i.back_ms != null);
  if (known && facts(known) > facts(incident)) return;
  incidents.set(incident.id, incident);
  if (detailSite === incident.site) drawIncidentBox(incident.site);
  scheduleRender();
}

function onExcusal(excusal) {
  if (excusal.excused) excused.set(excusal.site, excusal);
  else excused.delete(excusal.site);
  if (detailSite === excusal.site) drawIncidentBox(excusal.site);
  scheduleRender();
}

/** The detail panel's part on what is being done about the site. */
function drawIncidentBox(id) {
  const box = $("#incident-box");
  if (!box) return;
  const incident = openIncident(id) ?? [...incidents.values()].filter((i) => i.site === id).at(-1) ?? null;
  const parts = [el("h3", {}, "Xử lý sự cố")];
  if (!incident) {
    parts.push(el("p", { class: "muted" }, "Không có sự cố nào đang mở."));
  } else {
    const taker = takerOf(incident);
    const open = incident.resolved_ms == null;
    parts.push(
      el("p", { class: `incident-state ${open ? (taker ? "taken" : "open") : "closed"}` },
        `${open ? "Đang mở" : "Đã đóng"}: ${CAUSE_WORDS[incident.cause]} từ ${clockTime(incident.opened_ms)}`,
        open ? "" : ` — đóng lúc ${clockTime(incident.resolved_ms)}${incident.closing === "excused" ? " (vắng có lý do)" : ""}`),
      el("p", { id: "incident-taker" }, taker ? `✎ ${taker.name} đang xử lý (nhận lúc ${clockTime(taker.at_ms)})` : open ? "⚠ Chưa ai nhận xử lý" : "Không ai nhận xử lý"),
    );
    if (open) parts.push(el("button", { type: "button", id: "take-incident", class: "primary", onclick: () => takeIncident(incident) }, taker ? "Tôi nhận thay" : "Tôi xử lý"));
    parts.push(el("ol", { class: "incident-notes" }, incident.notes.map((n) => el("li", {}, `${clockTime(n.at_ms)} ${n.name}: ${n.text}`))));
    const input = el("input", { type: "text", id: "incident-note", maxlength: "500", placeholder: "Ghi chú: đã gọi anh Hùng: mất điện, 5 phút", "aria-label": "Ghi chú xử lý" });
    parts.push(el("form", { class: "note-form", onsubmit: (event) => { event.preventDefault(); noteIncident(incident, input); } },
      input, el("button", { type: "submit" }, "Ghi chú")));
  }
  const excusal = excused.get(id);
  if (excusal) {
    parts.push(el("p", { class: "excused-note" }, `Vắng mặt có lý do (${excusal.name}, ${clockTime(excusal.at_ms)}): ${excusal.reason}`),
      el("button", { type: "button", onclick: () => excuseSite(id, false) }, "Bỏ đánh dấu vắng"));
  } else {
    const reason = el("input", { type: "text", maxlength: "300", placeholder: "Lý do (ban tổ chức đã đồng ý)", "aria-label": "Lý do vắng mặt" });
    parts.push(el("form", { class: "note-form", onsubmit: (event) => { event.preventDefault(); excuseSite(id, true, reason); } },
      reason, el("button", { type: "submit" }, "Vắng có lý do")));
  }
  box.replaceChildren(...parts);
}

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
  if (excused.has(site.id)) return [el("span", { class: "state" }, "◌ Vắng (có lý do)")];
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
  const isExcused = excused.has(site.id);
  const incident = isExcused ? null : openIncident(site.id);
  const taker = takerOf(incident);
  const classes = ["tile", isExcused ? "excused" : `state-${site.state}`];
  if (taker) classes.push("taken");
  if (untaken(incident)) classes.push("untaken");
  if (site.flapping) classes.push("flapping");
  if (confirmed.has(site.id)) classes.push("confirmed");
  const device = devices.get(site.id);
  if (device?.state === "down") classes.push("device-down");
  if (timer?.slot?.venue === site.id) classes.push("presenting");
  if (timer?.next?.venue === site.id) classes.push("on-deck");
  const age = now - (changedAt.get(site.id) ?? -Infinity);
  const attributes = { "data-site": site.id, "data-state": isExcused ? "excused" : site.state, role: "button", tabindex: "0", title: site.name, onclick: () => showDetail(site.id) };
  if (age < RING_MS) {
    classes.push("changed");
    attributes.style = `--age: ${-Math.round(age)}ms`;
  }
  const role = roleOf(site.id);
  const extra = role || (taker ? `${taker.name} xử lý` : untaken(incident) ? "⚠ chưa ai nhận" : device?.state === "down" ? "⚠ thiết bị" : "");
  if (taker) attributes.title = `${site.name} — ${taker.name} đang xử lý`;
  return el(
    "div",
    { ...attributes, class: classes.join(" ") },
    el("div", { class: "name" }, ...nameParts(site.name)),
    el("div", { class: "status" }, ...status(site)),
    extra ? el("span", { class: `role${role ? "" : taker ? " taker" : untaken(incident) ? " untaken" : ""}` }, extra) : null,
  );
}

/** Every alert whose condition holds now, newest first. */
function currentAlerts() {
  const alerts = [];
  const nameOf = (id) => sites.get(id)?.name ?? id;
  const covered = new Set();
  for (const [key, alert] of serverAlerts) {
    if (sites.get(alert.site)?.state === "online") continue; // the site is back
    if (excused.has(alert.site)) continue;
    alerts.push({ key, ...alert });
    covered.add(alert.site);
  }
  for (const site of sites.values()) {
    if (site.state !== "offline" || covered.has(site.id) || excused.has(site.id)) continue;
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
    if (device.state !== "down" || excused.has(id)) continue;
    alerts.push({
      key: `device:${id}:${device.since_ms ?? 0}`,
      site: id,
      kind: "device",
      at_ms: device.since_ms ?? 0,
      text: `${nameOf(id)}: thiết bị cầu không phản hồi từ ${clockTime(device.since_ms)}`,
    });
  }
  // An open incident the alerts above do not show (a link degraded for long).
  const alerted = new Set(alerts.map((a) => a.site));
  for (const incident of incidents.values()) {
    // Back and waiting to close: nothing to do.
    if (incident.resolved_ms != null || incident.back_ms != null || alerted.has(incident.site) || excused.has(incident.site)) continue;
    alerts.push({
      key: `incident:${incident.id}`,
      site: incident.site,
      kind: "incident",
      at_ms: incident.opened_ms,
      text: `${nameOf(incident.site)}: ${CAUSE_WORDS[incident.cause]} từ ${clockTime(incident.opened_ms)}`,
    });
  }
  // Unhandled first: an incident nobody took is raised again.
  const rank = (a) => (untaken(openIncident(a.site)) ? 0 : 1);
  return alerts.sort((a, b) => rank(a) - rank(b) || b.at_ms - a.at_ms);
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
  const open = $("#incident-count");
  open.className = `incident-count${incidentCount.untaken ? " some" : ""}`;
  open.textContent = incidentCount.open
    ? `Sự cố ${incidentCount.open}${incidentCount.untaken ? ` · ${incidentCount.untaken} chưa ai nhận` : ""}`
    : "";
  $("#alert-list").replaceChildren(
    ...[...showing.values()].map((alert) => {
      const incident = openIncident(alert.site);
      const taker = takerOf(incident);
      const raisedAgain = untaken(incident);
      return el("div", { class: `wall-alert ${alert.kind}${raisedAgain ? " untaken" : ""}`, "data-alert": alert.key, role: "alert" },
        el("span", { title: alert.text }, `${raisedAgain ? "⚠ CHƯA AI NHẬN: " : "⚠ "}${alert.text}`),
        taker
          ? el("span", { class: "taker", title: `${taker.name} nhận lúc ${clockTime(taker.at_ms)}` }, `${taker.name} đang xử lý`)
          : incident ? el("button", { type: "button", class: "take", onclick: () => takeIncident(incident) }, "Tôi xử lý") : null,
        el("button", { type: "button", class: "dismiss", onclick: () => dismiss(alert) }, "Đã biết"),
      );
    }),
  );
  $("#past-open").textContent = `Cảnh báo đã qua (${past.length})`;
  if (!$("#past").classList.contains("hidden")) drawPast();
}

/** Marks an alert "Đã biết": stored with the name typed on this wall, then off the strip. */
async function dismiss(alert) {
  const name = staffName("Đã biết");
  if (!name) return;
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
  // An excused site is counted apart: not among the offline.
  for (const s of sites.values()) if (!excused.has(s.id)) counts[s.state] += 1;
  // Needing someone: open and not yet back. Yellow only for those raised again (nobody
  // took them in time), not for one that opened a second ago.
  const needing = [...incidents.values()].filter((i) => i.resolved_ms == null && i.back_ms == null && !excused.has(i.site));
  const openCount = needing.length;
  const untakenCount = needing.filter(untaken).length;
  // The header keeps one row at 1366 px: the excused ride on the total, the incidents on the strip.
  $("#counters").replaceChildren(
    el("span", { class: "counter", id: "count-total" }, "Tổng", el("b", {}, String(counts.total)),
      excused.size ? el("span", { class: "excused-count", id: "count-excused", title: "Vắng mặt có lý do: không tính là mất kết nối" }, ` · vắng ${excused.size}`) : null),
    ...["online", "degraded", "offline", "never_seen"].map((state) =>
      el("span", { class: `counter state-${state}${counts[state] && state === "offline" ? " some" : ""}`, id: `count-${state}` }, `${STATE_ICONS[state]} ${STATE_LABELS[state]}`, el("b", {}, String(counts[state]))),
    ),
  );
  incidentCount = { open: openCount, untaken: untakenCount };
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
  detailSite = id;
  const panel = $("#detail");
  panel.classList.remove("hidden");
  panel.replaceChildren(el("p", {}, "Đang tải…"));
  try {
    const s = await getJson(`/api/sites/${id}`);
    const now = clock.now();
    panel.replaceChildren(
      el("button", { type: "button", onclick: () => { panel.classList.add("hidden"); detailSite = null; } }, "Đóng ✕"),
      el("h2", {}, s.name),
      el("p", {}, el("span", { class: `badge state-${s.state}` }, `${STATE_ICONS[s.state]} ${STATE_LABELS[s.state]}`), ` từ ${clockTime(s.since_ms)}`),
      el("section", { id: "incident-box", class: "incident-box" }),
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
    drawIncidentBox(id);
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
  if (transition?.to === "offline" && soundOn && !excused.has(site.id)) beep(roleOf(site.id) ? 4 : 2);
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
      incidents.clear();
      for (const incident of snapshot.incidents ?? []) incidents.set(incident.id, incident);
      excused.clear();
      for (const excusal of snapshot.excused ?? []) excused.set(excusal.site, excusal);
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
      else if (frame.type === "incident") onIncident(frame);
      else if (frame.type === "excusal") onExcusal(frame);
      scheduleRender();
    },
  });
  animate(drawTimer, clock);
  setInterval(render, 5000); // ages and rings wear off
}

main();
