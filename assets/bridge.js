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

let devices = null; // the latest device check, sent with the line check

const DEVICE_ERRORS = {
  NotReadableError: "đang bị chương trình khác dùng — đóng phần mềm họp trực tuyến rồi kiểm tra lại, hoặc kiểm tra trước khi mở nó",
  NotAllowedError: "trình duyệt chưa được phép dùng — bấm biểu tượng ổ khóa cạnh địa chỉ trang, cho phép, rồi kiểm tra lại",
  NotFoundError: "không thấy thiết bị — cắm vào máy rồi kiểm tra lại",
};
const deviceError = (error) => ({ error: ["NotReadableError", "NotAllowedError", "NotFoundError"].includes(error?.name) ? error.name : "Other" });
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The camera over 3 s: its size, frames per second, and whether the picture is black
 * (mean luma) or frozen (mean change between frames), from a small copy of each frame. */
async function measureCamera() {
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: true });
  } catch (error) {
    return deviceError(error);
  }
  const video = $("#camera-preview");
  video.classList.remove("hidden");
  video.srcObject = stream;
  try {
    await video.play();
    const settings = stream.getVideoTracks()[0].getSettings();
    const canvas = document.createElement("canvas");
    canvas.width = 64;
    canvas.height = 48;
    const paint = canvas.getContext("2d", { willReadFrequently: true });
    let frames = 0;
    const count = () => { frames += 1; video.requestVideoFrameCallback?.(count); };
    video.requestVideoFrameCallback?.(count);
    let previous = null;
    const lumas = [], changes = [];
    const started = performance.now();
    while (performance.now() - started < 3000) {
      await sleep(100);
      paint.drawImage(video, 0, 0, 64, 48);
      const pixels = paint.getImageData(0, 0, 64, 48).data;
      const luma = new Float32Array(64 * 48);
      for (let i = 0; i < luma.length; i++) luma[i] = 0.299 * pixels[i * 4] + 0.587 * pixels[i * 4 + 1] + 0.114 * pixels[i * 4 + 2];
      lumas.push(luma.reduce((a, b) => a + b, 0) / luma.length);
      if (previous) changes.push(luma.reduce((sum, v, i) => sum + Math.abs(v - previous[i]), 0) / luma.length);
      previous = luma;
    }
    const seconds = (performance.now() - started) / 1000;
    const mean = (list) => (list.length ? list.reduce((a, b) => a + b, 0) / list.length : null);
    return {
      width: video.videoWidth || settings.width || null,
      height: video.videoHeight || settings.height || null,
      fps: video.requestVideoFrameCallback ? Math.round((frames / seconds) * 10) / 10 : settings.frameRate ?? null,
      brightness: mean(lumas),
      change: mean(changes),
    };
  } finally {
    for (const track of stream.getTracks()) track.stop();
    video.srcObject = null;
    video.classList.add("hidden");
  }
}

/** The microphone's loudest moment while the technician speaks (up to 6 s; done early
 * once it is clearly heard), in dBFS, with a level meter on screen. */
async function measureMicrophone() {
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (error) {
    return deviceError(error);
  }
  const context = new AudioContext();
  $("#mic-box").classList.remove("hidden");
  try {
    await context.resume();
    const analyser = context.createAnalyser();
    analyser.fftSize = 2048;
    context.createMediaStreamSource(stream).connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    let peak = 0;
    const started = performance.now();
    while (performance.now() - started < 6000) {
      await sleep(50);
      analyser.getFloatTimeDomainData(samples);
      const rms = Math.sqrt(samples.reduce((sum, v) => sum + v * v, 0) / samples.length);
      peak = Math.max(peak, rms);
      const dbfs = rms > 0 ? 20 * Math.log10(rms) : -100;
      $("#mic-level").style.width = `${Math.max(0, Math.min(100, (dbfs + 60) * (100 / 60)))}%`;
      if (peak > 0.1 && performance.now() - started > 1500) break; // clearly heard (−20 dBFS)
    }
    return { peak_dbfs: peak > 0 ? Math.max(-100, Math.round(20 * Math.log10(peak) * 10) / 10) : -100 };
  } finally {
    for (const track of stream.getTracks()) track.stop();
    await context.close();
    $("#mic-box").classList.add("hidden");
  }
}

/** A test tone through the speakers; the technician says whether it was heard. */
async function askSpeakers() {
  const context = new AudioContext();
  await context.resume();
  const tone = context.createOscillator();
  const gain = context.createGain();
  tone.frequency.value = 880;
  gain.gain.value = 0.3;
  tone.connect(gain).connect(context.destination);
  // Beeps of 0.3 s, every 0.6 s, until answered.
  for (let t = 0; t < 30; t += 0.6) {
    gain.gain.setValueAtTime(0.3, context.currentTime + t);
    gain.gain.setValueAtTime(0, context.currentTime + t + 0.3);
  }
  tone.start();
  const ask = $("#speakers-ask");
  ask.classList.remove("hidden");
  const heard = await new Promise((resolve) => {
    $("#speakers-yes").onclick = () => resolve(true);
    $("#speakers-no").onclick = () => resolve(false);
  });
  ask.classList.add("hidden");
  tone.stop();
  await context.close();
  return heard;
}

/** Camera, micro and speakers, one after the other; the results go with the line check. */
async function checkDevices() {
  $("#devices-start").disabled = true;
  const status = $("#devices-status");
  const words = [];
  try {
    status.textContent = "Đang kiểm tra camera (3 giây)…";
    const camera = await measureCamera();
    words.push(camera.error
      ? `Camera: ${DEVICE_ERRORS[camera.error] ?? "trình duyệt không mở được"}`
      : `Camera: ${camera.width}×${camera.height}, ${camera.fps} khung/s`);
    status.textContent = `${words.join(" · ")} — đang kiểm tra micro…`;
    const microphone = await measureMicrophone();
    words.push(microphone.error
      ? `Micro: ${DEVICE_ERRORS[microphone.error] ?? "trình duyệt không mở được"}`
      : `Micro: ${microphone.peak_dbfs} dBFS`);
    status.textContent = `${words.join(" · ")} — đang thử loa…`;
    const speakersHeard = await askSpeakers();
    words.push(`Loa: ${speakersHeard ? "nghe thấy" : "không nghe thấy"}`);
    devices = { camera, microphone, speakers_heard: speakersHeard };
    status.replaceChildren(el("span", { id: "devices-summary" }, words.join(" · ")),
      el("span", { class: "muted" }, " — kết quả nằm trong bảng sau khi kiểm tra đường truyền."));
  } catch (error) {
    status.textContent = `Không kiểm tra được thiết bị: ${error.message}`;
  } finally {
    $("#devices-start").disabled = false;
  }
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
  if (!bridge.send({ type: "check_request", technician, checklist, ...(devices ? { devices } : {}) })) {
    $("#check-status").textContent = "Chưa kết nối được với máy chủ; thử lại sau.";
    return;
  }
  $("#check-start").disabled = true;
  $("#check-status").textContent = "Đang bắt đầu…";
}

let udp = null; // the UDP phase's peer connection

/** The UDP phase: a WebRTC data channel to the service (unordered, no retransmits, like
 * the video itself); every packet the service sends is echoed back at once. */
async function startUdp(frame) {
  stopUdp();
  try {
    const pc = new RTCPeerConnection({ iceServers: [] });
    const channel = pc.createDataChannel("diemcau-udp", { ordered: false, maxRetransmits: 0 });
    channel.binaryType = "arraybuffer";
    channel.onmessage = (event) => {
      if (channel.readyState === "open") channel.send(event.data);
    };
    udp = { pc, check: frame.check };
    await pc.setLocalDescription(await pc.createOffer());
    bridge.send({ type: "udp_offer", check: frame.check, sdp: pc.localDescription.sdp });
    // The phase's own length and then some: the page lets go if the service does not.
    setTimeout(stopUdp, (frame.seconds + 15) * 1000);
  } catch (error) {
    $("#check-status").textContent = `Trình duyệt không mở được kênh UDP: ${error.message}`;
  }
}

async function onUdpFrame(frame) {
  if (frame.type === "udp_answer" && udp?.check === frame.check) {
    await udp.pc.setRemoteDescription({ type: "answer", sdp: frame.sdp });
  } else if (frame.code === "udp_refused") {
    $("#check-status").textContent = `Không kiểm tra được đường UDP: ${frame.message}`;
  }
}

function stopUdp() {
  udp?.pc.close();
  udp = null;
}

function onCheckFrame(frame) {
  if (frame.type === "check_start" && frame.phase === "udp") {
    $("#check-status").textContent = `Đang đo đường UDP (hình và tiếng đi đường này, ${frame.seconds} s)…`;
    startUdp(frame);
  } else if (frame.type === "check_start") {
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
    stopUdp();
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
  $("#devices-start").addEventListener("click", checkDevices);
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
      } else if (frame.type === "udp_answer" || frame.code === "udp_refused") {
        onUdpFrame(frame);
      } else if (frame.type === "error") {
        $("#link-quality").replaceChildren(el("span", {}, `Lỗi: ${frame.message}`));
      }
    },
  });
  animate(draw, clock);
}

main();
