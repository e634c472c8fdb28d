// The organisers' board: every site's latest rehearsal verdict, history, filters, CSV.
import { $, el, whoami, getJson, postJson, postText, fail, connectLive, ServerClock, dateTime } from "/assets/common.js";

const VERDICTS = { pass: "Đạt", warn: "Cần lưu ý", fail: "Không đạt", not_checked: "Chưa kiểm tra" };
const COUNTS = { ...VERDICTS, retest: "Cần kiểm tra lại" };
const when = dateTime;
let board = null;

function render() {
  $("#counts").replaceChildren(
    ...Object.entries(COUNTS).map(([key, label]) =>
      el("span", { class: `count verdict-${key}`, id: `count-${key}` }, label, el("b", {}, String(board.counts[key] ?? 0))),
    ),
  );
  const verdict = $("#verdict").value;
  const district = $("#district").value;
  const rows = board.sites.filter((s) => {
    const v = s.latest?.verdict ?? "not_checked";
    const matches = !verdict || v === verdict || (verdict === "retest" && s.retest);
    return matches && (!district || s.former_district === district);
  });
  $("#board").replaceChildren(
    ...rows.map((s) => {
      const v = s.latest?.verdict ?? "not_checked";
      return el("tr", { "data-site": s.id, onclick: () => showHistory(s) },
        el("td", {}, s.id),
        el("td", {}, s.name),
        el("td", {}, s.former_district),
        el("td", {}, s.slot ? when(s.slot.starts_ms) : "—"),
        el("td", { class: `verdict-${v}` }, VERDICTS[v], s.retest ? el("span", { class: "retest" }, " · cần kiểm tra lại") : null),
        el("td", {}, when(s.latest?.started_ms)),
        el("td", {}, s.latest?.technician ?? ""),
        el("td", {}, String(s.attempts)));
    }),
  );
}

function showHistory(site) {
  const panel = $("#history");
  panel.classList.remove("hidden");
  panel.replaceChildren(el("div", {},
    el("button", { type: "button", onclick: () => panel.classList.add("hidden") }, "Đóng ✕"),
    el("h2", {}, `${site.name} (${site.id})`),
    site.history.length === 0 ? el("p", {}, "Chưa kiểm tra lần nào.") : null,
    site.history.map((a) =>
      el("div", { class: "attempt" },
        el("h3", {}, `${when(a.started_ms)} — `, el("span", { class: `verdict-${a.verdict}` }, VERDICTS[a.verdict]), ` — ${a.technician}`),
        el("table", {}, el("tbody", {}, a.rows.map((row) =>
          el("tr", {},
            el("td", {}, row.label),
            el("td", {}, row.figure == null ? "không đo được" : `${Math.round(row.figure * 10) / 10} ${row.unit}`),
            el("td", { class: `verdict-${row.verdict}` }, VERDICTS[row.verdict]),
            el("td", { class: "muted" }, row.advice ?? ""))))),
      )),
  ));
}

async function refresh() {
  board = await getJson("/api/rehearsals");
  const districts = [...new Set(board.sites.map((s) => s.former_district))];
  const select = $("#district");
  if (select.options.length === 1) {
    select.append(...districts.map((d) => el("option", { value: d }, d)));
  }
  render();
}

async function main() {
  try {
    await whoami();
    await refresh();
  } catch (error) {
    fail(error.message);
    return;
  }
  $("#schedule-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const days = $("#schedule-days").value.split(",").map((d) => d.trim()).filter(Boolean);
      const answer = await postJson("/api/rehearsals/schedule", {
        days, day_start: $("#schedule-start").value, day_end: $("#schedule-end").value, minutes: Number($("#schedule-minutes").value),
      });
      $("#schedule-status").textContent = `Đã lập lịch cho ${answer.slots} điểm cầu.`;
      refresh();
    } catch (error) {
      $("#schedule-status").textContent = error.message;
    }
  });
  $("#schedule-file").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    try {
      const body = await postText("/api/rehearsals/schedule", await file.text());
      $("#schedule-status").textContent = `Đã nhập lịch cho ${body.slots} điểm cầu.`;
    } catch (error) {
      $("#schedule-status").textContent = `Chưa nhập được lịch: ${error.message}`;
    }
    refresh();
  });
  $("#verdict").addEventListener("change", render);
  $("#district").addEventListener("change", render);
  connectLive({
    clock: new ServerClock(),
    onSnapshot: () => {},
    onFrame: (frame) => {
      if (frame.type === "rehearsal") refresh();
    },
  });
}

main();
