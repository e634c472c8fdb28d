// The commune's page: opening it *is* the bridge (protocol v1 over /ws/bridge).
import { $, el, whoami, fail, countdown, animate, connectBridge, ServerClock, clockTime } from "/assets/common.js";

const clock = new ServerClock();
let timer = null;
let site = null;
let lastSync = null;

function linkWords(sync) {
  if (!sync) return "";
  const rtt = Math.round(sync.rtt_ms);
  if (rtt <= 100) return `Đường truyền tốt (độ trễ ${rtt} ms).`;
  if (rtt <= 300) return `Đường truyền hơi chậm (độ trễ ${rtt} ms): hạn chế tải khác trên mạng.`;
  return `Đường truyền chậm (độ trễ ${rtt} ms): nên dùng cáp mạng thay cho Wi-Fi.`;
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
}

function draw() {
  const c = countdown(timer, clock.now());
  $("#countdown").textContent = c.text;
  $("#countdown").className = `countdown big phase-${c.phase}`;
  $("#times-up").classList.toggle("hidden", !c.overtime);
  $("#clock").textContent = `Giờ máy chủ ${clockTime(clock.now())}`;
}

async function main() {
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
  connectBridge(site.id, {
    clock,
    onStatus: (state, detail) => {
      if (state === "online") setLink("online", "✔ Đã kết nối với hội trường tỉnh");
      else if (state === "refused") setLink("offline", `✕ Máy chủ từ chối kết nối: ${detail || "khoá không hợp lệ"}`);
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
      } else if (frame.type === "error") {
        $("#link-quality").replaceChildren(el("span", {}, `Lỗi: ${frame.message}`));
      }
    },
  });
  animate(draw);
}

main();
