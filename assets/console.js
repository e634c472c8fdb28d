// The secretary's console: run the 26 slots with buttons and keyboard shortcuts.
import {
  $, el, whoami, getJson, postJson, fail, countdown, showTimerState, animate, connectLive, ServerClock,
  STATE_LABELS, STATE_ICONS, alertBox, showConnection, SLOT_LABELS, clockTime,
} from "/assets/common.js";

const clock = new ServerClock();
const sites = new Map();
let timer = null;
let agenda = [];

const minutes = (ms) => {
  if (ms === null || ms === undefined) return "";
  const s = Math.floor(Math.abs(ms) / 1000);
  return `${ms < 0 ? "-" : ""}${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
};

function venueText(venue) {
  if (!venue || venue === "hall") return el("span", {}, "Hội trường tỉnh");
  const site = sites.get(venue);
  if (!site) return el("span", {}, `Điểm cầu ${venue}`);
  return el("span", {}, `Điểm cầu ${site.name} — `, el("span", { class: `badge state-${site.state}`, id: "venue-state" }, `${STATE_ICONS[site.state]} ${STATE_LABELS[site.state]}`));
}

async function command(name, body = {}) {
  $("#feedback").textContent = "";
  try {
    timer = await postJson(`/api/timer/${name}`, { ...body, command_id: crypto.randomUUID() });
    render();
  } catch (error) {
    $("#feedback").textContent = error.message;
  }
}

function toggle() {
  const state = timer?.state;
  if (state === "running") command("pause");
  else if (state === "paused") command("resume");
  else command("start");
}

function render() {
  const slot = timer?.slot;
  $("#slot-title").textContent = slot ? `Phần ${slot.order}: ${slot.unit}` : "Chưa chọn phần tham luận";
  $("#slot-topic").textContent = slot?.topic ?? "Chọn một dòng trong chương trình, rồi bấm Bắt đầu.";
  $("#venue").replaceChildren(slot ? venueText(slot.venue) : "");
  $("#slot-state").textContent = SLOT_LABELS[timer?.state ?? "idle"];
  const next = timer?.next;
  $("#next-up").replaceChildren(next ? el("span", {}, "Tiếp theo: ", el("b", {}, `Phần ${next.order} — ${next.unit}`), " · ", venueText(next.venue)) : "");
  $("#agenda").replaceChildren(
    ...agenda.map((row) =>
      el("tr", {
        class: `state-${row.state}${slot?.order === row.order ? " current-row" : ""}`,
        "data-order": String(row.order),
        onclick: () => command("select", { slot: row.order }),
      },
        el("td", {}, String(row.order)),
        el("td", {}, row.unit),
        el("td", {}, row.venue === "hall" ? "Hội trường" : (sites.get(row.venue)?.name ?? row.venue)),
        el("td", {}, SLOT_LABELS[row.state]),
        el("td", {}, minutes(row.planned_ms + row.added_ms)),
        el("td", {}, minutes(row.actual_ms)),
        el("td", { class: row.overtime_ms > 0 ? "overtime" : "" }, row.overtime_ms > 0 ? minutes(row.overtime_ms) : ""),
      ),
    ),
  );
}

function drawCountdown() {
  const c = countdown(timer, clock.now());
  const box = $("#countdown");
  box.textContent = c.overtime ? `HẾT GIỜ ${c.text}` : c.text;
  box.className = `countdown big phase-${c.phase}`;
  showTimerState($("#timer-state"), c);
}

async function refreshAgenda() {
  try {
    agenda = (await getJson("/api/agenda")).slots;
    render();
  } catch (error) {
    $("#feedback").textContent = `Không tải được chương trình: ${error.message}`;
  }
}

async function main() {
  try {
    await whoami();
  } catch (error) {
    fail(error.message);
    return;
  }
  $("#btn-start").addEventListener("click", toggle);
  $("#btn-stop").addEventListener("click", () => command("stop"));
  $("#btn-next").addEventListener("click", () => command("next"));
  $("#btn-previous").addEventListener("click", () => command("previous"));
  $("#btn-plus").addEventListener("click", () => command("adjust", { seconds: 60 }));
  $("#btn-minus").addEventListener("click", () => command("adjust", { seconds: -60 }));
  $("#btn-reset").addEventListener("click", () => command("reset"));
  document.addEventListener("keydown", (event) => {
    if (event.target.matches("input, textarea, select") || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === " ") { event.preventDefault(); toggle(); }
    else if (event.key === "n" || event.key === "N") command("next");
    else if (event.key === "+" || event.key === "=") command("adjust", { seconds: 60 });
    else if (event.key === "-" || event.key === "_") command("adjust", { seconds: -60 });
  });
  connectLive({
    clock,
    onStatus: showConnection,
    onSnapshot: (snapshot) => {
      for (const s of snapshot.sites ?? []) sites.set(s.id, s);
      timer = snapshot.timer;
      refreshAgenda();
    },
    onFrame: (frame) => {
      if (frame.type === "timer") {
        timer = frame;
        refreshAgenda();
      } else if (frame.type === "site") {
        sites.set(frame.site.id, frame.site);
        render();
      } else if (frame.type === "alert") {
        alertBox(`⚠ ${frame.message} (${clockTime(frame.at_ms)})`, "presenter-alert");
      }
    },
  });
  animate(drawCountdown, clock);
}

main();
