// The bridge wall: 92 tiles, counters, search, detail, and an alarm when a site drops.
import {
  $, el, fold, clockTime, ago, ms, beep, whoami, getJson, postJson, fail, countdown, animate, reasonWords,
  connectLive, ServerClock, STATE_LABELS, STATE_ICONS, alertBox, showConnection,
} from "/assets/common.js";

const clock = new ServerClock();
const sites = new Map(); // id → site view
const droppedAt = new Map(); // id → server ms of the drop (highlight for a while)
let timer = null;
let soundOn = false;
let rollCall = null; // latest roll call summary
const messages = new Map(); // id → message summary (with `missing` sites)
const confirmed = new Set(); // sites that confirmed the latest roll call
const devices = new Map(); // id → active check of the site's video equipment
const HIGHLIGHT_MS = 60_000;
const PROBLEM_ORDER = { offline: 0, degraded: 1, never_seen: 2, online: 3 };

function tile(site) {
  const now = clock.now();
  const classes = [`tile`, `state-${site.state}`];
  if (site.flapping) classes.push("flapping");
  if (confirmed.has(site.id)) classes.push("confirmed");
  const device = devices.get(site.id);
  if (device?.state === "down") classes.push("device-down");
  if (timer?.slot?.venue === site.id) classes.push("presenting");
  if (timer?.next?.venue === site.id) classes.push("on-deck");
  if (droppedAt.has(site.id) && now - droppedAt.get(site.id) < HIGHLIGHT_MS) classes.push("dropped");
  return el(
    "div",
    { class: classes.join(" "), "data-site": site.id, "data-state": site.state, role: "button", tabindex: "0", onclick: () => showDetail(site.id) },
    el("div", { class: "name" }, site.name),
    el("div", { class: "line" },
      el("span", { class: "state" }, `${STATE_ICONS[site.state]} ${STATE_LABELS[site.state]}`),
      el("span", {}, site.rtt_ms != null ? ms(site.rtt_ms) : ""),
    ),
    el("div", { class: "line" },
      el("span", {}, device?.state === "down" ? "⚠ thiết bị" : site.id),
      el("span", { title: "Từ lúc" }, site.since_ms ? `từ ${clockTime(site.since_ms)}` : ""),
    ),
  );
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
      el("span", { class: `counter state-${state}`, id: `count-${state}` }, `${STATE_ICONS[state]} ${STATE_LABELS[state]}`, el("b", {}, String(counts[state]))),
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
      el("section", { class: "group" }, el("h2", {}, `${name} (${members.length})`), el("div", { class: "grid" }, members.map(tile))),
    ),
  );
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
  if (transition?.to === "offline") {
    droppedAt.set(site.id, clock.now());
    const soon = timer?.slot?.venue === site.id || timer?.next?.venue === site.id;
    if (soundOn) beep(soon ? 4 : 2);
    if (soon) alertBox(`⚠ ${site.name} mất kết nối — điểm cầu này ${timer?.slot?.venue === site.id ? "đang trình bày" : "trình bày tiếp theo"}. Gọi điện cho xã ngay.`);
  }
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
  $("#sound").addEventListener("click", (event) => {
    soundOn = !soundOn;
    event.target.textContent = soundOn ? "Âm báo: bật" : "Âm báo: tắt (bấm để bật)";
    if (soundOn) beep(1);
  });
  $("#roll-call-start").addEventListener("click", async () => {
    try {
      await postJson("/api/rollcall", { deadline_seconds: 300 });
    } catch (error) {
      $("#message-status").textContent = error.message;
    }
  });
  $("#message-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const answer = await postJson("/api/messages", { text: $("#message-text").value, to: $("#message-to").value, level: $("#message-level").value });
      $("#message-status").textContent = `Đã gửi tới ${answer.notice.recipients} điểm cầu (${answer.delivered_now} đang trực tuyến).`;
      $("#message-text").value = "";
    } catch (error) {
      $("#message-status").textContent = error.message;
    }
  });
  await loadNotices();
  connectLive({
    clock,
    onStatus: showConnection,
    onSnapshot: (snapshot) => {
      sites.clear();
      for (const s of snapshot.sites) sites.set(s.id, s);
      timer = snapshot.timer;
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
      else if (frame.type === "device") {
        devices.set(frame.site, frame.device);
        if (frame.transition.to === "down") alertBox(`⚠ ${sites.get(frame.site)?.name ?? frame.site}: thiết bị cầu không phản hồi (${frame.transition.reason})`);
      } else if (frame.type === "notice" && frame.notice.kind === "roll_call") {
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
      }
      else if (frame.type === "alert") alertBox(`⚠ ${frame.message}`);
      render();
    },
  });
  animate(drawTimer, clock);
  setInterval(render, 5000); // ages and highlights wear off
}

main();
