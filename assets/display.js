// The hall screen and presenter monitor: speaker, topic, a huge countdown. No controls.
import { $, whoami, fail, countdown, showTimerState, animate, connectLive, ServerClock } from "/assets/common.js";

const clock = new ServerClock();
let timer = null;

function render() {
  const slot = timer?.slot;
  $("#order").textContent = slot ? `Tham luận số ${slot.order}` : "";
  $("#unit").textContent = slot ? slot.unit : "Hội nghị sơ kết 01 năm chính quyền địa phương 02 cấp";
  $("#topic").textContent = slot?.topic ?? "";
  $("#next").textContent = timer?.next ? `Tiếp theo: ${timer.next.unit}` : "";
}

function draw() {
  const c = countdown(timer, clock.now());
  const box = $("#countdown");
  box.textContent = c.text;
  box.className = `countdown huge phase-${c.phase}`;
  showTimerState($("#timer-state"), c);
  $("#times-up").classList.toggle("hidden", !c.overtime);
}

async function main() {
  try {
    await whoami();
  } catch (error) {
    fail(error.message);
    return;
  }
  document.body.addEventListener("click", () => document.documentElement.requestFullscreen?.().catch(() => {}));
  connectLive({
    clock,
    onStatus: (status) => {
      // The countdown keeps running on the last snapshot while the link is down.
      $("#conn").textContent = status === "online" ? "" : "⟳ Đang kết nối lại…";
      $("#conn").className = `conn ${status}`;
    },
    onSnapshot: (snapshot) => {
      timer = snapshot.timer;
      render();
    },
    onFrame: (frame) => {
      if (frame.type === "timer") {
        timer = frame;
        render();
      }
    },
  });
  animate(draw, clock);
}

main();
