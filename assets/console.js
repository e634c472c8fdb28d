// The secretary's console: run the 26 slots with buttons and keyboard shortcuts.
import {
  $, el, whoami, getJson, postJson, fail, countdown, showTimerState, animate, connectLive, ServerClock,
  STATE_LABELS, STATE_ICONS, alertBox, showConnection, SLOT_LABELS, clockTime, programmeWords,
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

/**
 * A command's answer can overtake the live frame of the command before it: keep the
 * newest timer (by `rev`), never step back to an older one.
 */
function take(snapshot) {
  if (!timer || snapshot.rev >= timer.rev) timer = snapshot;
}

async function command(name, body = {}) {
  disarm();
  try {
    take(await postJson(`/api/timer/${name}`, { ...body, command_id: crypto.randomUUID() }));
    $("#feedback").textContent = ""; // a command that worked clears the last complaint
    render();
  } catch (error) {
    $("#feedback").textContent = error.message;
  }
}

/** What the primary button does now, in the words on it. */
function primary() {
  const state = timer?.state;
  if (state === "running") return { label: "⏸ Tạm dừng", run: () => command("pause") };
  if (state === "paused") return { label: "▶ Tiếp tục", run: () => command("resume") };
  const slot = timer?.slot;
  if (slot && (state === "ready" || state === "pending")) return { label: `▶ Bắt đầu phần ${slot.order}`, run: () => command("start") };
  // Nothing chosen, or the chosen one is over: the slot on deck ("Tiếp theo").
  if (timer?.next) return { label: `▶ Bắt đầu phần ${timer.next.order}`, run: () => command("start") };
  return { label: "Hết chương trình", run: null };
}

const CONFIRM_MS = 3000;
let armed = null; // { action, until, button }

function disarm() {
  armed?.button?.classList.remove("armed");
  armed = null;
}

/**
 * Ending a running slot, stopping and resetting take a second press within 3 s (a
 * clicker's PageDown too): one slip never ends a speaker's time.
 */
function confirmThen(action, button, prompt, run) {
  if (armed?.action === action && Date.now() < armed.until) {
    run();
    return;
  }
  disarm();
  armed = { action, until: Date.now() + CONFIRM_MS, button };
  button.classList.add("armed");
  $("#feedback").textContent = prompt;
  setTimeout(() => {
    if (armed?.action === action && Date.now() >= armed.until) {
      disarm();
      if ($("#feedback").textContent === prompt) $("#feedback").textContent = "";
    }
  }, CONFIRM_MS + 50);
}

const active = () => timer?.state === "running" || timer?.state === "paused";

function next() {
  if (!active()) return command("next");
  confirmThen("next", $("#btn-next"), `Phần ${timer.slot.order} đang chạy: bấm “Phần tiếp” (N / Page Down) lần nữa trong 3 giây để kết thúc nó và chuyển phần.`, () => command("next"));
}

function stop() {
  if (!active()) return command("stop");
  confirmThen("stop", $("#btn-stop"), `Bấm “Kết thúc” (S) lần nữa trong 3 giây để kết thúc phần ${timer.slot.order}.`, () => command("stop"));
}

function reset() {
  const slot = timer?.slot;
  if (!slot) return command("reset");
  confirmThen("reset", $("#btn-reset"), `Bấm “Chạy lại” lần nữa trong 3 giây: phần ${slot.order} chạy lại từ đầu (lượt mới; lượt trước vẫn được giữ trong biên bản).`, () => command("reset"));
}

function toggleBlack() {
  command("screen", { show: timer?.screen === "black" ? "timer" : "black" });
}

function toggleHelp(show = $("#help").classList.contains("hidden")) {
  $("#help").classList.toggle("hidden", !show);
}

function render() {
  const action = primary();
  $("#start-label").textContent = action.label;
  $("#btn-start").disabled = !action.run;
  for (const b of document.querySelectorAll(".hall-screen button")) b.classList.toggle("on", b.dataset.screen === (timer?.screen ?? "timer"));
  $("#note-now").textContent = timer?.note ? `Đang nhắc diễn giả: “${timer.note}”` : "";
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
        el("td", {}, String(row.order), row.attempt > 1 ? el("span", { class: "attempt", title: `${row.earlier_attempts.length} lượt trước được giữ trong biên bản` }, `lượt ${row.attempt}`) : null),
        el("td", {}, row.planned_start_ms ? clockTime(row.planned_start_ms).slice(0, 5) : ""),
        el("td", {}, row.unit),
        el("td", {}, row.venue === "hall" ? "Hội trường" : (sites.get(row.venue)?.name ?? row.venue)),
        el("td", {}, SLOT_LABELS[row.state]),
        el("td", {}, minutes(row.planned_ms + row.added_ms)),
        el("td", {}, minutes(row.actual_ms)),
        el("td", { class: row.overtime_ms > 0 ? "overtime" : "" }, row.overtime_ms > 0 ? minutes(row.overtime_ms) : ""),
        el("td", {}, row.state === "done" ? "" : el("button", {
          type: "button", class: "edit", title: "Sửa phần này", "data-edit": String(row.order),
          onclick: (event) => { event.stopPropagation(); openEdit(row); },
        }, "✎")),
      ),
    ),
  );
}

let editing = null; // the order of the slot in the edit form; null: a new slot

function openEdit(row) {
  editing = row.order;
  $("#edit-after-label").classList.add("hidden");
  $("#edit-row-actions").classList.remove("hidden");
  $("#edit-save").textContent = "Lưu thay đổi";
  $("#edit-to").value = String(row.order);
  $("#edit-title").textContent = `Sửa phần ${row.order}`;
  $("#edit-unit").value = row.unit;
  $("#edit-topic").value = row.topic;
  $("#edit-minutes").value = String(row.planned_ms / 60000);
  $("#edit-venue").value = row.venue;
  $("#edit-form").classList.remove("hidden");
  $("#edit-unit").focus();
}

/** The form for a slot added on the day, after the chosen one (or at the end). */
function openInsert() {
  editing = null;
  $("#edit-title").textContent = "Thêm phần mới";
  for (const field of ["#edit-unit", "#edit-topic", "#edit-venue"]) $(field).value = "";
  $("#edit-minutes").value = "7";
  $("#edit-venue").value = "hall";
  $("#edit-after").value = String(timer?.slot?.order ?? agenda.length);
  $("#edit-after-label").classList.remove("hidden");
  $("#edit-row-actions").classList.add("hidden");
  $("#edit-save").textContent = "Thêm vào chương trình";
  $("#edit-form").classList.remove("hidden");
  $("#edit-unit").focus();
}

async function saveEdit(event) {
  event.preventDefault();
  const seconds = Math.round(Number($("#edit-minutes").value) * 60);
  const fields = { unit: $("#edit-unit").value, topic: $("#edit-topic").value, seconds, venue: $("#edit-venue").value.trim() };
  if (editing === null) await command("insert", { ...fields, after: Number($("#edit-after").value) });
  else await command("edit", { slot: editing, ...fields });
  if (!$("#feedback").textContent) $("#edit-form").classList.add("hidden");
  refreshAgenda();
}

function drawCountdown() {
  const undoable = timer?.undo_until_ms != null && clock.now() <= timer.undo_until_ms;
  $("#btn-undo").classList.toggle("hidden", !undoable);
  if (undoable) $("#btn-undo").firstChild.textContent = `↶ Hoàn tác (${Math.ceil((timer.undo_until_ms - clock.now()) / 1000)} s) `;
  $("#time-of-day").textContent = clockTime(clock.now());
  $("#programme").textContent = programmeWords(timer?.programme);
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
  const startOrPause = () => primary().run?.();
  $("#btn-start").addEventListener("click", startOrPause);
  $("#btn-stop").addEventListener("click", stop);
  $("#btn-next").addEventListener("click", next);
  $("#btn-previous").addEventListener("click", () => command("previous"));
  $("#btn-plus").addEventListener("click", () => command("adjust", { seconds: 60 }));
  $("#btn-minus").addEventListener("click", () => command("adjust", { seconds: -60 }));
  $("#btn-reset").addEventListener("click", reset);
  $("#btn-help").addEventListener("click", () => toggleHelp());
  $("#btn-undo").addEventListener("click", () => command("undo"));
  $("#edit-form").addEventListener("submit", saveEdit);
  $("#edit-cancel").addEventListener("click", () => $("#edit-form").classList.add("hidden"));
  $("#btn-insert").addEventListener("click", openInsert);
  const closeAfter = async (name, body) => {
    await command(name, body);
    if (!$("#feedback").textContent) $("#edit-form").classList.add("hidden");
    refreshAgenda();
  };
  $("#edit-move").addEventListener("click", () => closeAfter("move", { slot: editing, to: Number($("#edit-to").value) }));
  $("#edit-withdraw").addEventListener("click", () =>
    confirmThen("withdraw", $("#edit-withdraw"), `Bấm “Rút khỏi chương trình” lần nữa trong 3 giây để rút phần ${editing}.`, () => closeAfter("withdraw", { slot: editing })));
  $("#help-close").addEventListener("click", () => toggleHelp(false));
  for (const b of document.querySelectorAll(".hall-screen button")) b.addEventListener("click", () => command("screen", { show: b.dataset.screen }));
  for (const b of document.querySelectorAll("[data-note]")) b.addEventListener("click", () => command("note", { text: b.dataset.note }));
  $("#note-form").addEventListener("submit", (event) => {
    event.preventDefault();
    command("note", { text: $("#note-text").value });
    $("#note-text").value = "";
  });
  $("#note-clear").addEventListener("click", () => command("note", { text: "" }));
  // The keyboard and a wireless presenter (it sends PageDown, PageUp and B or ".").
  const keys = {
    " ": startOrPause,
    n: next, N: next, PageDown: next,
    p: () => command("previous"), P: () => command("previous"), PageUp: () => command("previous"),
    s: stop, S: stop,
    u: () => command("undo"), U: () => command("undo"),
    b: toggleBlack, B: toggleBlack, ".": toggleBlack,
    "+": () => command("adjust", { seconds: 60 }), "=": () => command("adjust", { seconds: 60 }),
    "-": () => command("adjust", { seconds: -60 }), "_": () => command("adjust", { seconds: -60 }),
    "?": () => toggleHelp(),
    Escape: () => { toggleHelp(false); disarm(); },
  };
  document.addEventListener("keydown", (event) => {
    if (event.target.matches("input, textarea, select") || event.ctrlKey || event.metaKey || event.altKey) return;
    const run = keys[event.key];
    if (!run) return;
    event.preventDefault(); // Space and PageDown would scroll the page
    event.target.blur?.(); // a focused button must not also take the key
    run();
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
        take(frame);
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
