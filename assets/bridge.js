// The commune's page: opening it *is* the bridge (protocol v1 over /ws/bridge).
import { $, el, whoami, getJson, fail, countdown, showTimerState, animate, connectBridge, ServerClock, clockTime, dateTime, beep } from "/assets/common.js";

const VERDICTS = { pass: "Đạt", warn: "Cần lưu ý", fail: "Không đạt" };

const clock = new ServerClock();
let timer = null;
let site = null;
let lastSync = null;
let bridge = null;
let download = null; // { check, started, windowMs, windows }

function linkWords(sync) {
  if (!sync) return "";
  const rtt = Math.round(sync.rtt_ms);
  if (rtt <= 100) return `Đường truyền tốt (độ trễ ${rtt} ms).`;
  if (rtt <= 300) return `Đường truyền hơi chậm (độ trễ ${rtt} ms): hạn chế tải khác trên mạng.`;
  return `Đường truyền chậm (độ trễ ${rtt} ms): nên dùng cáp mạng thay cho Wi-Fi.`;
}

/** Another machine opened this site's page: say so, and stop until asked. */
function showElsewhere() {
  setLink("elsewhere", "Trang điểm cầu này đang mở trên một máy khác; máy này đã ngừng kết nối.");
  document.body.classList.add("elsewhere");
  const button = el("button", { id: "take-over", class: "primary" }, "Dùng máy này");
  button.addEventListener("click", () => {
    document.body.classList.remove("elsewhere");
    setLink("never_seen", "Đang kết nối tới máy chủ tỉnh…");
    $("#link-quality").replaceChildren();
    bridge.takeOver();
  });
  $("#link-quality").replaceChildren(
    el("span", {}, "Nếu đây là máy dùng cho hội nghị, bấm: "),
    button,
  );
}

function setLink(state, text) {
  $("#link").className = `link state-${state}`;
  $("#link-state").textContent = text;
}

function render() {
  const slot = timer?.slot;
  $("#speaker").textContent = slot ? `Phần ${slot.order}: ${slot.unit}` : "Chưa có phần tham luận nào";
  const turn = $("#turn");
  if (slot?.venue === site.id && (timer.state === "running" || timer.state === "paused")) {
    turn.replaceChildren("● Bạn đang phát biểu");
  } else if (timer?.next?.venue === site.id || (slot?.venue === site.id && timer.state === "ready")) {
    turn.replaceChildren("Chuẩn bị: bạn phát biểu tiếp theo");
  } else {
    turn.replaceChildren();
  }
  turn.classList.toggle("hidden", !turn.textContent);
  // The secretary's note to the speaker reaches the bridge that is presenting.
  const note = slot?.venue === site.id ? timer?.note : null;
  $("#note").textContent = note ? `Thư ký nhắc: ${note}` : "";
  $("#note").classList.toggle("hidden", !note);
}

function draw() {
  const c = countdown(timer, clock.now());
  $("#countdown").textContent = c.text;
  $("#countdown").className = `countdown big phase-${c.phase}`;
  showTimerState($("#timer-state"), c);
  $("#times-up").classList.toggle("hidden", !c.overtime);
  $("#clock").textContent = `Giờ máy chủ ${clockTime(clock.now())}`;
}

function startCheck() {
  const technician = $("#technician").value.trim();
  if (!technician) {
    $("#check-status").textContent = "Hãy ghi tên kỹ thuật viên trước.";
    return;
  }
  const checklist = {};
  for (const box of document.querySelectorAll("#checklist input")) checklist[box.name] = box.checked;
  $("#check-result").replaceChildren();
  if (!bridge.send({ type: "check_request", technician, checklist })) {
    $("#check-status").textContent = "Chưa kết nối được với máy chủ; thử lại sau.";
    return;
  }
  $("#check-start").disabled = true;
  $("#check-status").textContent = "Đang bắt đầu…";
}

function onCheckFrame(frame) {
  if (frame.type === "check_start") {
    const phases = { latency: "Đang đo độ trễ", download: "Đang đo tải xuống", upload: "Đang đo tải lên" };
    $("#check-status").textContent = `${phases[frame.phase] ?? frame.phase} (${frame.seconds} s)…`;
    if (frame.phase === "download") {
      download = { check: frame.check, started: performance.now(), windowMs: frame.window_ms, windows: [] };
      setTimeout(() => {
        bridge.send({ type: "check_report", check: download.check, phase: "download", windows_bytes: Array.from(download.windows, (b) => b ?? 0) });
        download = null;
      }, frame.seconds * 1000);
    } else if (frame.phase === "upload") {
      bridge.upload(frame.frame_bytes, frame.seconds);
    }
  } else if (frame.type === "check_result") {
    $("#check-start").disabled = false;
    $("#check-status").replaceChildren("Kết quả: ", el("span", { id: "check-verdict", class: `verdict-${frame.verdict}` }, VERDICTS[frame.verdict]));
    $("#check-result").replaceChildren(
      el("table", {},
        el("thead", {}, el("tr", {}, el("th", {}, "Chỉ số"), el("th", {}, "Đo được"), el("th", {}, "Ngưỡng"), el("th", {}, "Kết quả"))),
        el("tbody", {}, frame.rows.map((row) => [
          el("tr", {},
            el("td", {}, row.label),
            el("td", {}, row.figure == null ? "không đo được" : `${Math.round(row.figure * 10) / 10} ${row.unit}`),
            el("td", {}, row.threshold),
            el("td", { class: `verdict-${row.verdict}` }, VERDICTS[row.verdict])),
          row.advice ? el("tr", {}, el("td", { colspan: "4", class: "muted" }, `→ ${row.advice}`)) : null,
        ])),
      ),
    );
  } else if (frame.type === "error" && frame.code?.startsWith("check_")) {
    $("#check-start").disabled = false;
    $("#check-status").textContent = frame.message;
  }
}

let soundOn = false;
/** The tab's own title, while nothing calls for attention. */
let calmTitle = document.title;

/** Something waits for the commune's answer: the tab's title, a flash, a sound. */
function callOut() {
  const rollCall = !$("#roll-call").classList.contains("hidden") && $("#roll-call-confirm");
  const urgent = document.querySelector("#messages .message.level-urgent, #messages .message.level-warning");
  const waiting = rollCall ? "ĐIỂM DANH" : urgent ? "⚠ TIN NHẮN KHẨN" : null;
  if (!document.body.classList.contains("attention")) calmTitle = document.title;
  document.title = waiting ? `${waiting} — ${calmTitle}` : calmTitle;
  document.body.classList.toggle("attention", Boolean(waiting));
  return waiting;
}

function showRollCall(frame) {
  const box = $("#roll-call");
  box.classList.remove("hidden");
  box.replaceChildren(
    el("p", {}, `Tỉnh điểm danh các điểm cầu — xác nhận trước ${clockTime(frame.deadline_ms)}`),
    el("button", {
      id: "roll-call-confirm",
      type: "button",
      onclick: () => {
        if (bridge.send({ type: "ack", ref: frame.id })) {
          box.replaceChildren(el("p", { id: "roll-call-done" }, `✔ Đã xác nhận có mặt lúc ${clockTime(clock.now())}`));
          callOut();
        }
      },
    }, "Xác nhận có mặt"),
  );
  if (callOut() && soundOn) beep(3);
}

function showMessage(frame) {
  if (document.querySelector(`[data-message="${frame.id}"]`)) return;
  const card = el("div", { class: `message level-${frame.level}`, "data-message": frame.id },
    el("p", {}, frame.text),
    el("button", {
      type: "button",
      onclick: () => {
        if (bridge.send({ type: "ack", ref: frame.id })) {
          card.remove();
          callOut();
        }
      },
    }, "Đã nhận"));
  $("#messages").prepend(card);
  if (callOut() && soundOn) beep(frame.level === "urgent" ? 3 : 1);
}

function onBinary(bytes) {
  if (!download) return;
  const index = Math.floor((performance.now() - download.started) / download.windowMs);
  download.windows[index] = (download.windows[index] ?? 0) + bytes;
}

async function main() {
  $("#sound").addEventListener("click", (event) => {
    soundOn = !soundOn;
    event.target.textContent = soundOn ? "Âm thanh: bật" : "Bật âm thanh";
    if (soundOn) beep(1);
  });
  let me;
  try {
    me = await whoami();
  } catch (error) {
    fail(error.message);
    return;
  }
  if (me.role !== "site" || !me.site) {
    fail("Trang điểm cầu cần liên kết riêng của xã (khoá điểm cầu).");
    return;
  }
  site = me.site;
  document.title = `${site.name} — điểm cầu`;
  $("#site-name").textContent = `Điểm cầu ${site.name}`;
  $("#check-start").addEventListener("click", startCheck);
  getJson("/api/rehearsals")
    .then(({ slot, attempts }) => {
      const parts = [];
      if (slot) parts.push(`Lịch kiểm tra của điểm cầu: ${dateTime(slot.starts_ms)} – ${clockTime(slot.ends_ms).slice(0, 5)}.`);
      if (attempts.length) parts.push(`Đã kiểm tra ${attempts.length} lần.`);
      $("#check-slot").textContent = parts.join(" ");
    })
    .catch(() => {});
  bridge = connectBridge(site.id, {
    clock,
    onBinary,
    onStatus: (state, detail) => {
      if (state === "online") setLink("online", "✔ Đã kết nối với hội trường tỉnh");
      else if (state === "refused") setLink("offline", `✕ Máy chủ từ chối kết nối: ${detail || "khoá không hợp lệ"}`);
      else if (state === "elsewhere") showElsewhere();
      else setLink("offline", "⟳ Mất kết nối — đang kết nối lại…");
    },
    onTimer: (frame) => {
      timer = frame;
      render();
    },
    onFrame: (frame) => {
      if (frame.type === "sync") {
        lastSync = frame;
        $("#link-quality").textContent = linkWords(lastSync);
      } else if (frame.type === "roll_call") {
        showRollCall(frame);
      } else if (frame.type === "message") {
        showMessage(frame);
      } else if (frame.type.startsWith("check_") || frame.code?.startsWith("check_")) {
        onCheckFrame(frame);
      } else if (frame.type === "error") {
        $("#link-quality").replaceChildren(el("span", {}, `Lỗi: ${frame.message}`));
      }
    },
  });
  animate(draw, clock);
}

main();
