// The hall screen and presenter monitor: speaker, topic, a huge countdown. No controls.
import { $, el, whoami, fail, countdown, showTimerState, animate, connectLive, ServerClock, clockTime, programmeWords } from "/assets/common.js";

const clock = new ServerClock();
let timer = null;

const NOTE_FLASH_MS = 6000;

function render() {
  const screen = timer?.screen ?? "timer";
  document.body.dataset.screen = screen; // timer, clock, next or black (display.css)
  const next = timer?.next;
  $("#next-face").replaceChildren(
    el("div", { class: "label" }, "Tiếp theo"),
    el("div", { class: "who" }, next ? next.unit : "Hết chương trình"),
    el("div", { class: "what" }, next?.topic ?? ""),
  );
  const note = $("#note");
  note.textContent = timer?.note ?? "";
  note.classList.toggle("hidden", !timer?.note);
  flashNote();
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
  $("#clock-face").textContent = clockTime(clock.now());
  $("#time-of-day").textContent = clockTime(clock.now()).slice(0, 5);
  $("#programme").textContent = programmeWords(timer?.programme);
  flashNote();
}

/** A new note flashes for a few seconds to catch the speaker's eye, then stays. */
function flashNote() {
  $("#note").classList.toggle("flash", timer?.note_ms != null && clock.now() - timer.note_ms < NOTE_FLASH_MS);
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
