// Shared by every page: who am I, the live feed and the bridge socket (with
// reconnects), the server clock, the countdown, Vietnamese labels and small helpers.

// The key has been traded for a session cookie: take it out of the address bar.
if (new URLSearchParams(location.search).has("key")) {
  history.replaceState(null, "", location.pathname);
}

export const STATE_LABELS = {
  online: "Trực tuyến",
  degraded: "Chập chờn",
  offline: "Mất kết nối",
  never_seen: "Chưa kết nối",
};

export const STATE_ICONS = { online: "●", degraded: "◐", offline: "✕", never_seen: "○" };

export const SLOT_LABELS = {
  pending: "Chưa trình bày",
  ready: "Chuẩn bị",
  running: "Đang trình bày",
  paused: "Tạm dừng",
  done: "Đã xong",
  idle: "Chưa chọn phần",
};

export const $ = (selector, root = document) => root.querySelector(selector);

/** Creates an element with attributes and children (strings become text). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

/** Lower case without Vietnamese diacritics: "Ngân Sơn" → "ngan son". */
export function fold(text) {
  return text
    .normalize("NFD")
    .replace(/[\u0300-\u036f]/g, "")
    .replace(/đ/g, "d")
    .replace(/Đ/g, "d")
    .toLowerCase();
}

const timeFormat = new Intl.DateTimeFormat("vi-VN", {
  timeZone: "Asia/Ho_Chi_Minh",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  hour12: false,
});

const dateTimeFormat = new Intl.DateTimeFormat("vi-VN", {
  timeZone: "Asia/Ho_Chi_Minh",
  day: "2-digit",
  month: "2-digit",
  year: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  hour12: false,
});

/** Date and time in Vietnam, e.g. "08:30 25/11/2026". */
export function dateTime(ms) {
  return ms ? dateTimeFormat.format(new Date(ms)) : "";
}

/** Wall-clock time in Vietnam, HH:MM:SS. */
export function clockTime(ms) {
  return ms ? timeFormat.format(new Date(ms)) : "—";
}

/** "5 phút trước"-style age of a server time. */
export function ago(ms, now) {
  if (!ms) return "—";
  const seconds = Math.max(0, Math.round((now - ms) / 1000));
  if (seconds < 60) return `${seconds} giây trước`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} phút trước`;
  return `${Math.floor(seconds / 3600)} giờ trước`;
}

export function ms(value) {
  return value === null || value === undefined ? "—" : `${Math.round(value)} ms`;
}

/** What an error answer means, in Vietnamese, for the person at the page. */
const ERROR_WORDS = {
  unauthorized: "Khoá không đúng hoặc phiên đã hết hạn: hãy mở lại trang bằng liên kết có khoá",
  forbidden: "Khoá của trang này không được làm việc này",
  not_found: "Không tìm thấy",
  bad_request: "Yêu cầu không hợp lệ",
  conflict: "Chưa làm được lúc này",
  too_large: "Dữ liệu gửi lên quá lớn",
  unsupported_media_type: "Sai loại dữ liệu gửi lên",
  unavailable: "Máy chủ tạm thời không ghi được dữ liệu; thử lại sau ít phút",
  internal: "Lỗi máy chủ; báo quản trị xem nhật ký (log) của dịch vụ",
};

/**
 * The Vietnamese sentence for an error answer: its meaning, then the service's detail
 * (already Vietnamese when it says "… — …", its first half; else kept in brackets).
 */
export function errorText(status, body, retryAfter) {
  const detail = body?.message ?? "";
  if (body?.error === "too_many") return `Thao tác quá nhiều lần; thử lại sau ${retryAfter ?? "ít"} giây`;
  if (detail.includes(" — ")) return detail.split(" — ")[0];
  const words = ERROR_WORDS[body?.error] ?? `Máy chủ trả lời lỗi ${status}`;
  return detail ? `${words} (${detail})` : words;
}

/** Fetches with the page session; rejects with a Vietnamese message. */
async function request(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { credentials: "same-origin", ...options });
  } catch {
    throw new Error("Không kết nối được máy chủ: kiểm tra mạng rồi thử lại");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(errorText(response.status, body, response.headers.get("Retry-After")));
  return body;
}

/** Who the page's session belongs to; throws with the reason if none. */
export async function whoami() {
  return request("/api/whoami");
}

/** GET a JSON API with the page session. */
export async function getJson(path) {
  return request(path);
}

/** POST a JSON API with the page session; resolves with the body, rejects with its message. */
export async function postJson(path, payload) {
  return request(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload) });
}

/** POST a file's text (CSV) with the page session. */
export async function postText(path, text, type = "text/csv") {
  return request(path, { method: "POST", headers: { "Content-Type": type }, body: text });
}

/** The server's clock as this page estimates it (offset = client − server). */
export class ServerClock {
  constructor() {
    this.offset = 0;
    this.uncertainty = Infinity;
    this.samples = [];
    this.steppedAt = -Infinity;
  }

  now() {
    return Date.now() - this.offset;
  }

  /** The server's clock stepped forward by `byMs` (it follows the wall clock): so does this one. */
  shift(byMs) {
    this.offset -= byMs;
    for (const s of this.samples) s.offset -= byMs;
    this.steppedAt = Date.now();
  }

  /** Takes the server's own estimate (bridge `sync`). */
  apply(offsetMs, uncertaintyMs) {
    this.offset = offsetMs;
    this.uncertainty = uncertaintyMs;
  }

  /** A request sent at t1 (client), answered at serverMs, back at t4: keep the best of 8. */
  sample(t1, serverMs, t4) {
    if (t1 < this.steppedAt) return; // asked before the server's clock stepped
    this.samples.push({ offset: (t1 + t4) / 2 - serverMs, rtt: t4 - t1 });
    if (this.samples.length > 8) this.samples.shift();
    const best = this.samples.reduce((a, b) => (b.rtt < a.rtt ? b : a));
    this.apply(best.offset, best.rtt / 2);
  }
}

function wsUrl(path) {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;
}

/** Backoff for reconnects: 1 s doubling to 10 s, ±50 % so sites do not return at once. */
function backoff(attempt) {
  const base = Math.min(10000, 1000 * 2 ** attempt);
  return base * (0.5 + Math.random());
}

/**
 * The live feed: `onSnapshot(snapshot)` first (and after any gap), then `onFrame(frame)`
 * for each change in order; `onStatus("online"|"reconnecting")`. Keeps `clock` in step.
 */
export function connectLive({ clock, onSnapshot, onFrame, onStatus }) {
  let attempt = 0;
  let seq = null;
  let socket;
  const open = () => {
    socket = new WebSocket(wsUrl("/ws/live"));
    const syncTime = () => {
      if (socket.readyState === WebSocket.OPEN) {
        socket.send(JSON.stringify({ type: "time", client_ms: Date.now() }));
      }
    };
    let timeTimer;
    socket.onopen = () => {
      attempt = 0;
      onStatus?.("online");
      for (let i = 0; i < 4; i++) setTimeout(syncTime, i * 250);
      timeTimer = setInterval(syncTime, 15000);
    };
    socket.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      if (frame.type === "time") {
        clock.sample(frame.client_ms, frame.server_ms, Date.now());
        return;
      }
      if (frame.type === "clock_step") clock.shift(frame.by_ms); // before any gap check
      if (frame.type === "snapshot") {
        seq = frame.seq;
        onSnapshot(frame);
        return;
      }
      if (frame.seq !== undefined && seq !== null) {
        if (frame.seq <= seq) return;
        if (frame.seq !== seq + 1 && frame.type !== "timer") {
          socket.send(JSON.stringify({ type: "resync" })); // a gap: start again from a snapshot
          return;
        }
        seq = frame.seq;
      }
      onFrame(frame);
    };
    socket.onclose = () => {
      clearInterval(timeTimer);
      onStatus?.("reconnecting");
      setTimeout(open, backoff(attempt++));
    };
  };
  open();
  return { close: () => socket?.close() };
}

/**
 * The bridge socket (protocol v1) for the page's own site: hello (the session cookie
 * authenticates it), an echo for every probe at once, `sync` into `clock`.
 * Handlers: onWelcome, onTimer, onStatus(state, detail), onFrame.
 */
export function connectBridge(siteId, { clock, onWelcome, onTimer, onStatus, onFrame, onBinary }) {
  let attempt = 0;
  let socket;
  const open = () => {
    socket = new WebSocket(wsUrl("/ws/bridge"));
    socket.binaryType = "arraybuffer";
    socket.onopen = () => {
      socket.send(JSON.stringify({ type: "hello", site: siteId, agent: "browser", version: "web-1" }));
    };
    socket.onmessage = (event) => {
      const received = Date.now();
      if (typeof event.data !== "string") {
        onBinary?.(event.data.byteLength); // rehearsal download data
        return;
      }
      const frame = JSON.parse(event.data);
      switch (frame.type) {
        case "probe":
          // Answered inside the message handler: it runs even in a background tab.
          socket.send(
            JSON.stringify({
              type: "echo",
              seq: frame.seq,
              server_ms: frame.server_ms,
              client_recv_ms: received,
              client_send_ms: Date.now(),
            }),
          );
          break;
        case "welcome":
          attempt = 0;
          onStatus?.("online");
          onWelcome?.(frame);
          break;
        case "sync":
          clock.apply(frame.offset_ms, frame.uncertainty_ms);
          onFrame?.(frame);
          break;
        case "timer":
          onTimer?.(frame);
          break;
        default:
          onFrame?.(frame);
      }
    };
    socket.onclose = (event) => {
      // A bad key or unknown site will not get better by retrying.
      if (event.code === 4401 || event.code === 4404) {
        onStatus?.("refused", event.reason);
        return;
      }
      // A newer page of this site took over: the two must not take turns. This one
      // waits until its user asks to use this machine again.
      if (event.code === 4409) {
        onStatus?.("elsewhere", event.reason);
        return;
      }
      onStatus?.("reconnecting", event.reason);
      setTimeout(open, backoff(attempt++));
    };
  };
  open();
  return {
    close: () => socket?.close(),
    /** Connects again after "elsewhere": this machine takes the site back. */
    takeOver: () => {
      attempt = 0;
      open();
    },
    /** Sends a JSON frame; false when not connected. */
    send: (value) => socket?.readyState === WebSocket.OPEN && (socket.send(JSON.stringify(value)), true),
    /** Sends upload test data for `seconds`, keeping about 1 MB in the socket's buffer. */
    upload: (frameBytes, seconds) => {
      const frame = new ArrayBuffer(frameBytes);
      const until = performance.now() + seconds * 1000;
      const pump = () => {
        if (performance.now() >= until || socket.readyState !== WebSocket.OPEN) return;
        while (socket.bufferedAmount < 1_000_000) socket.send(frame);
        setTimeout(pump, 5);
      };
      pump();
    },
  };
}

/** Time left in the slot at a whole second of server time (negative: overtime). */
export function remainingAt(timer, serverNow) {
  if (!timer || timer.state === "idle") return null;
  if (timer.state === "running" && timer.deadline_ms) {
    // Evaluate at the coming whole server second: every screen changes digits together,
    // on whole seconds of server time, and a fresh slot shows 7:00, never 7:01.
    const second = Math.ceil(serverNow / 1000) * 1000;
    return timer.deadline_ms - second;
  }
  return timer.remaining_ms ?? null;
}

/** Why a site changed state, in Vietnamese for the staff (the record keeps the service's words). */
export function reasonWords(reason) {
  if (!reason) return "";
  if (reason.includes(" — ")) return reason.split(" — ")[0]; // already bilingual
  const seconds = (msText) => (Number(msText) / 1000).toLocaleString("vi-VN");
  const rules = [
    [/^connected$/, () => "đã kết nối"],
    [/^(\d+) timely echoes$/, (m) => `${m[1]} lần phản hồi đúng hạn liên tiếp`],
    [/^no frame for (\d+) ms$/, (m) => `không nhận được tín hiệu nào trong ${seconds(m[1])} giây`],
    [/^connection lost$/, () => "mất kết nối (đường truyền bị ngắt)"],
    [/^socket closed by the site \((\d+)\)$/, (m) => `điểm cầu đã đóng kết nối (mã ${m[1]})`],
    [/^server restarted/, () => "máy chủ khởi động lại; chờ điểm cầu kết nối lại"],
    [/^replaced by a newer connection$/, () => "được thay bằng kết nối mới hơn của cùng điểm cầu"],
    [/^not reading/, () => "điểm cầu không nhận dữ liệu (hàng đợi đầy)"],
    [/^too many frames per second$/, () => "gửi quá nhiều dữ liệu mỗi giây"],
    [/^text frames must be UTF-8$/, () => "dữ liệu gửi lên sai mã (không phải UTF-8)"],
    [/^websocket protocol error: (.*)$/, (m) => `lỗi giao thức websocket: ${m[1]}`],
    [/^frame exceeds the size limit$/, () => "gói dữ liệu quá lớn"],
  ];
  for (const [pattern, words] of rules) {
    const m = reason.match(pattern);
    if (m) return words(m);
  }
  return reason;
}

/** The timer's state in words, as every screen says it (empty while idle). */
export const TIMER_WORDS = { running: "ĐANG CHẠY", paused: "TẠM DỪNG", done: "ĐÃ XONG", ready: "SẴN SÀNG", pending: "", idle: "" };

/**
 * Text, phase and state of the countdown: "6:59", or "+0:12" in overtime. A paused or
 * finished slot wins over the time left: it must never look like a running one.
 */
export function countdown(timer, serverNow) {
  const remaining = remainingAt(timer, serverNow);
  const state = timer?.state ?? "idle";
  const words = TIMER_WORDS[state] ?? "";
  if (remaining === null) return { text: "--:--", phase: "idle", overtime: false, state, words };
  const overtime = remaining < 0;
  const seconds = overtime ? Math.floor(-remaining / 1000) : Math.ceil(remaining / 1000);
  const text = `${overtime ? "+" : ""}${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
  let phase = "normal";
  if (overtime) phase = "overtime";
  else if (remaining <= timer.danger_ms) phase = "danger";
  else if (remaining <= timer.warning_ms) phase = "warning";
  if (timer.state !== "running") phase = timer.state;
  return { text, phase, overtime, state, words };
}

/**
 * The programme against its plan in words: "Chậm 4 phút · dự kiến kết thúc 11:32", or
 * "" when no start time is configured.
 */
export function programmeWords(programme) {
  if (!programme) return "";
  const minutes = Math.round(Math.abs(programme.delay_ms) / 60000);
  const pace = minutes === 0 ? "Đúng giờ" : programme.delay_ms > 0 ? `Chậm ${minutes} phút` : `Sớm ${minutes} phút`;
  return `${pace} · dự kiến kết thúc ${clockTime(programme.projected_end_ms).slice(0, 5)}`;
}

/** Shows the timer's state in words in `box` (`#timer-state`), styled by state. */
export function showTimerState(box, c) {
  if (!box) return;
  box.textContent = c.state === "running" ? "" : c.words;
  box.className = `timer-state state-${c.state}`;
}

/**
 * Calls `draw` now, every 100 ms, and 2 ms after every whole second of server time: the
 * digits change on whole server seconds, so every screen turns to the next
 * second together, as close as their clock estimates agree — not up to a redraw apart.
 */
export function animate(draw, clock) {
  const tick = () => {
    draw();
    const intoSecond = ((clock.now() % 1000) + 1000) % 1000;
    setTimeout(tick, Math.min(100, 1000 - intoSecond + 2));
  };
  tick();
}

/** A short tone (Web Audio, no file to load): the wall's alarm. */
export function beep(times = 2) {
  try {
    const audio = new AudioContext();
    for (let i = 0; i < times; i++) {
      const tone = audio.createOscillator();
      const gain = audio.createGain();
      tone.frequency.value = 880;
      gain.gain.value = 0.2;
      tone.connect(gain).connect(audio.destination);
      tone.start(audio.currentTime + i * 0.35);
      tone.stop(audio.currentTime + i * 0.35 + 0.2);
    }
  } catch {
    // No audio device: the highlighted tile is the alarm.
  }
}

/** An alert at the top of the page (into `#alerts`) until someone presses "Đã biết". */
export function alertBox(text, id) {
  const box = el("div", { class: "alert", role: "alert", id }, text, " ", el("button", { type: "button", onclick: () => box.remove() }, "Đã biết"));
  $("#alerts").prepend(box);
}

/** Shows the live feed's state in `#conn`. */
export function showConnection(status) {
  $("#conn").textContent = status === "online" ? "Đã kết nối máy chủ" : "Mất kết nối máy chủ — đang thử lại…";
  $("#conn").className = `conn ${status}`;
}

/** Shows a clear error instead of the page's data. */
export function fail(message) {
  document.body.replaceChildren(
    el("main", { class: "message" }, el("h1", { id: "message-title" }, "Không mở được trang"), el("p", { id: "message-text" }, message)),
  );
  document.body.className = "message";
}
