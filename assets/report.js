// The printable evidence report: totals, every site, every presentation.
import { $, el, whoami, getJson, fail, dateTime } from "/assets/common.js";

const VERDICTS = { pass: "Đạt", warn: "Cần lưu ý", fail: "Không đạt", not_checked: "Chưa kiểm tra" };
const time = new Intl.DateTimeFormat("vi-VN", { timeZone: "Asia/Ho_Chi_Minh", timeStyle: "medium" });
const minutes = (ms) => {
  if (ms === null || ms === undefined) return "";
  const s = Math.floor(Math.abs(ms) / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
};
const percent = (ratio) => `${(ratio * 100).toFixed(1)} %`;

// The window is kept in the page's address (?from=…&to=…, RFC 3339 with +07:00) so a
// printed or shared report and its CSV cover the same time.
const VN_OFFSET_MS = 7 * 3600 * 1000;
const toInput = (ms) => new Date(ms + VN_OFFSET_MS).toISOString().slice(0, 16);
const fromInput = (value) => `${value}:00+07:00`;

function windowForm(window) {
  $("#from").value = toInput(window.from_ms);
  $("#to").value = toInput(window.to_ms);
  $("#window-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const endsAfterStart = $("#to").value > $("#from").value;
    $("#window-error").textContent = endsAfterStart ? "" : "Thời điểm kết thúc phải sau thời điểm bắt đầu.";
    if (!endsAfterStart) return;
    const query = new URLSearchParams({ from: fromInput($("#from").value), to: fromInput($("#to").value) });
    location.search = query.toString();
  });
}

async function main() {
  let report;
  let query;
  try {
    await whoami();
    query = location.search.replace(/^\?/, "");
    report = await getJson(`/api/report${query ? `?${query}` : ""}`);
  } catch (error) {
    fail(error.message);
    return;
  }
  $("#print").addEventListener("click", () => window.print());
  if (query) $("#csv").href = `/api/report.csv?${query}`;
  windowForm(report.window);
  $("#window").textContent = `Từ ${dateTime(report.window.from_ms)} đến ${dateTime(report.window.to_ms)} (giờ Việt Nam) · lập lúc ${dateTime(report.generated_ms)}`;
  const t = report.totals;
  const total = (label, value, id) => el("div", { class: "total", id }, label, el("b", {}, value));
  $("#totals").replaceChildren(...[
    total("Điểm cầu", String(t.sites)),
    total("Trực tuyến trung bình", percent(t.average_uptime ?? 0), "total-uptime"),
    total("Điểm cầu có mất kết nối", `${t.sites_with_outages} (${t.outages} lần)`, "total-outages"),
    total("Xác nhận điểm danh", `${t.roll_call_confirmed}/${t.sites}`),
    total("Kiểm tra đạt / lưu ý / không đạt", `${t.rehearsal.pass} / ${t.rehearsal.warn} / ${t.rehearsal.fail}`),
    total("Chưa kiểm tra", String(t.rehearsal.not_checked)),
    total("Tham luận đã trình bày", `${t.slots_done}/${t.slots}`, "total-slots"),
    total("Tổng vượt giờ", minutes(t.overtime_ms)),
    total("Sự cố", `${t.incidents.incidents} (${t.incidents.never_taken} chưa ai nhận)`, "total-incidents"),
    total("Nhận xử lý sau (trung vị)", t.incidents.median_time_to_take_ms == null ? "—" : minutes(t.incidents.median_time_to_take_ms), "total-take"),
    total("Khắc phục sau (trung vị)", t.incidents.median_duration_ms == null ? "—" : minutes(t.incidents.median_duration_ms), "total-resolve"),
    t.excused_sites ? total("Vắng mặt có lý do", String(t.excused_sites), "total-excused") : null,
  ].filter(Boolean));
  $("#incident-totals").textContent = t.excused_sites
    ? "Điểm cầu vắng mặt có lý do không tính vào thời gian trực tuyến trung bình và số lần mất kết nối."
    : "";
  const CAUSES = { offline: "mất kết nối", degraded: "kết nối kém kéo dài", equipment: "thiết bị cầu không phản hồi" };
  const ENDINGS = { back: "", excused: " (vắng có lý do)", window_end: " (hết giờ hội nghị)" };
  const at = (ms) => (ms == null ? "" : time.format(new Date(ms)));
  $("#incidents").replaceChildren(...report.incidents.map((i) =>
    el("tr", { "data-incident": i.id },
      el("td", {}, `${i.name ?? i.site} (${i.site})`),
      el("td", {}, CAUSES[i.cause] ?? i.cause),
      el("td", {}, at(i.opened_ms)),
      el("td", {}, i.taken_by ?? "chưa ai nhận"),
      el("td", {}, i.time_to_take_ms == null ? "" : minutes(i.time_to_take_ms)),
      el("td", {}, i.notes.map((n) => `${at(n.at_ms)} ${n.name}: ${n.text}`).join(" · ")),
      el("td", {}, i.resolved_ms == null ? "đang mở" : `${at(i.resolved_ms)}${ENDINGS[i.closing] ?? ""}`),
      el("td", {}, i.duration_ms == null ? "" : minutes(i.duration_ms)))));
  $("#sites").replaceChildren(...report.sites.map((s) =>
    el("tr", { "data-site": s.id },
      el("td", {}, s.id),
      el("td", {}, s.name),
      el("td", {}, percent(s.uptime)),
      el("td", {}, String(s.outages)),
      el("td", {}, minutes(s.outage_total_ms)),
      el("td", {}, minutes(s.outage_longest_ms)),
      el("td", {}, s.rtt_ms == null ? "" : `${Math.round(s.rtt_ms)} ms`),
      el("td", {}, VERDICTS[s.rehearsal], s.rehearsal_not_passed?.length ? el("span", { class: "muted" }, ` (${s.rehearsal_not_passed.join(", ")})`) : null),
      el("td", {}, s.roll_call_confirmed_ms ? time.format(new Date(s.roll_call_confirmed_ms)) : "—"),
      el("td", {}, s.excused ? `Vắng có lý do: ${s.excused.reason}` : ""))));
  // Each earlier attempt (reset) is a row of its own, before the slot's current run.
  $("#presentations").replaceChildren(...report.presentations.flatMap((p) => [
    ...(p.earlier_attempts ?? []).map((a) =>
      el("tr", { class: "earlier-attempt" },
        el("td", {}, String(p.order)),
        el("td", {}, `${p.unit} — lượt ${a.number}, đặt lại lúc ${time.format(new Date(a.reset_ms))}`),
        el("td", {}, minutes(p.planned_ms + a.added_ms)),
        el("td", {}, minutes(a.actual_ms)),
        el("td", {}, a.overtime_ms ? minutes(a.overtime_ms) : ""),
        el("td", {}, String(a.pauses)),
        el("td", {}, String(a.interruptions.length)))),
    el("tr", {},
      el("td", {}, String(p.order)),
      el("td", {}, p.attempt > 1 ? `${p.unit} — lượt ${p.attempt}` : p.unit),
      el("td", {}, minutes(p.planned_ms + p.added_ms)),
      el("td", {}, minutes(p.actual_ms)),
      el("td", {}, p.overtime_ms ? minutes(p.overtime_ms) : ""),
      el("td", {}, String(p.pauses)),
      el("td", {}, String(p.interruptions.length))),
  ]));
}

main();
