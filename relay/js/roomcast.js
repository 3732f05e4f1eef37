// roomcast.js: the roomcast client for browsers and Node 20+, served by the
// relay at GET /roomcast.js. One ES module, no build step, no dependencies;
// JSON wire format (subprotocol roomcast.v1.json), protocol v1.1.
//
//   import { Client } from "https://relay.example/roomcast.js";
//   const client = new Client("wss://relay.example/ws", { token, getToken });
//   const room = client.room("lobby:eu-1", { history: 20 });
//   room.on("message", (m) => show(m));          // once each, in seq order
//   room.on("gap", ({ from, to, reason }) => {}); // what could not be filled
//   await room.join();
//   const seq = await room.send("gg", { meta: { color: "red" } });
//
// In Node 20, pass a WebSocket implementation: new Client(url, { WebSocket })
// with WebSocket from the ws package (Node 22 has one built in).
//
// What the client promises: each message of a room is handed to the
// "message" listeners exactly once, in seq order, across reconnects; when
// the relay cannot fill a hole (aged out of history, or a new epoch: the
// relay restarted and the room's seqs started over) a "gap" event says so
// before the next message. Decisions (reconnect, back-off, token refresh)
// are recorded in the relay's relay/proto/PROTOCOL.md, "JavaScript client".

const SUBPROTOCOL = "roomcast.v1.json";
const MAX_TIMER = 0x7fffffff; // ms: the longest setTimeout (about 24.8 days)

const DEFAULTS = {
  minDelay: 500, // ms: the first reconnect waits between half this and this
  maxDelay: 30000, // ms: the back-off stops growing here
  maxFailures: 10, // connection attempts in a row that fail before hello, then stop
  pingInterval: 20000, // ms between ping frames; the connection is dropped after two intervals of silence
  timeout: 10000, // ms to wait for the answer to send, leave, mod, refresh
  refreshMargin: 0, // ms before exp to refresh the token; 0: a quarter of its remaining life, 0.5 s to 60 s
};

// RoomcastError is how every failure is reported: code is the protocol error
// code (rate_limited, slow_mode, muted, banned, forbidden, not_joined,
// too_large, bad_request, bad_token, ...) or one of the client's own:
// disconnected (the connection ended before the answer), closed
// (client.close()), timeout, left, no_token.
export class RoomcastError extends Error {
  constructor(code, message, extra = {}) {
    super(message || code);
    this.name = "RoomcastError";
    this.code = code;
    if (extra.retryMs != null) this.retryMs = extra.retryMs;
    if (extra.room != null) this.room = extra.room;
  }
}

// report hands a listener's exception to the platform (the console, or
// Node's uncaught exception) without disturbing the client.
function report(err) {
  if (typeof globalThis.reportError === "function") globalThis.reportError(err);
  else setTimeout(() => { throw err; });
}

class Emitter {
  constructor() {
    this._listeners = new Map();
  }

  // on adds a listener and returns a function that removes it.
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, []);
    this._listeners.get(event).push(fn);
    return () => this.off(event, fn);
  }

  off(event, fn) {
    const l = this._listeners.get(event);
    if (!l) return;
    const i = l.indexOf(fn);
    if (i >= 0) l.splice(i, 1);
  }

  _emit(event, arg) {
    const l = this._listeners.get(event);
    if (!l) return;
    for (const fn of l.slice()) {
      try {
        fn(arg);
      } catch (err) {
        report(err);
      }
    }
  }
}

// tokenExp is a JWT's exp in Unix milliseconds, 0 if it has none (or is not
// a JWT the client can read: then it is never refreshed before expiry).
function tokenExp(token) {
  try {
    let p = String(token).split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    while (p.length % 4) p += "=";
    const exp = JSON.parse(atob(p)).exp;
    return typeof exp === "number" ? exp * 1000 : 0;
  } catch {
    return 0;
  }
}

// httpStatus digs the status of a refused upgrade out of an error event:
// the ws package says "Unexpected server response: 401"; browsers say
// nothing (0).
function httpStatus(text) {
  const m = /server response: (\d{3})/.exec(text || "");
  return m ? Number(m[1]) : 0;
}

export class Client extends Emitter {
  // url is the relay's WebSocket endpoint (ws:// or wss://, path /ws).
  // opts: token (a JWT), getToken (async () => a JWT: called before the
  // token's exp and after close 4010, and for the first connection when
  // there is no token), WebSocket (the implementation, default
  // globalThis.WebSocket), and the tunables of DEFAULTS. Without a token or
  // getToken the client is an anonymous viewer. It connects at once (on
  // the next microtask, so listeners added right after construction see
  // "connecting").
  constructor(url, opts = {}) {
    super();
    this.url = String(url);
    this.opts = { ...DEFAULTS, ...opts };
    this._WS = opts.WebSocket || globalThis.WebSocket;
    if (typeof this._WS !== "function") {
      throw new Error("roomcast: no WebSocket implementation; in Node 20 pass { WebSocket } from the ws package");
    }
    this._token = opts.token || "";
    this._getToken = typeof opts.getToken === "function" ? opts.getToken : null;
    this.state = "disconnected";
    this.code = 0; // the close code of the last connection
    this.hello = null; // the relay's hello: user, name, anon, role, limits, node
    this._rooms = new Map();
    this._pending = new Map(); // ref -> {kind, room, resolve, reject, timer}
    this._ref = 0;
    this._ws = null;
    this._gen = 0; // connection attempt number: late events of old ones are ignored
    this._connected = false; // hello received on this._ws
    this._failures = 0; // attempts in a row that ended before hello
    this._retries = 0; // reconnects since the last hello (the back-off exponent)
    this._fresh = false; // fetch a new token before the next attempt (after 4010 or 401)
    this._closed = false; // close() was called
    this._stopped = true; // no connection and none planned
    this._retryTimer = 0;
    this._refreshTimer = 0;
    this._pingTimer = 0;
    this._lastRecv = 0;
    this._lastError = "";
    this._stopped = false;
    queueMicrotask(() => this._open());
  }

  // room returns the room called name (the same object for the same name).
  // opts: history (how many recent messages the first join brings, and the
  // most a rejoin with a gap brings), since and epoch (a position saved
  // earlier: the first join resumes after it).
  room(name, opts = {}) {
    let r = this._rooms.get(name);
    if (!r) {
      r = new Room(this, name, opts);
      this._rooms.set(name, r);
    }
    return r;
  }

  // connect starts connecting again after the client stopped (after 4003,
  // too many failures, or close()): every room that was joined is joined
  // again, resuming after its last message.
  connect() {
    this._closed = false;
    if (!this._stopped) return;
    this._stopped = false;
    this._failures = 0;
    this._retries = 0;
    this._open();
  }

  // close ends the connection for good (until connect()): pending requests
  // and joins reject with code "closed".
  close() {
    this._closed = true;
    this._stopped = true;
    clearTimeout(this._retryTimer);
    const ws = this._ws;
    this._teardown();
    if (ws) {
      try {
        ws.close(1000);
      } catch {
        // already closing
      }
    }
    this._failAll("closed", "client closed");
    this.code = 1000;
    this._setState("disconnected", 1000, "client closed");
  }

  _setState(state, code, reason, extra) {
    this.state = state;
    this._emit("state", { state, code, reason: reason || "", ...extra });
  }

  async _open() {
    if (this._closed || this._ws) return;
    const gen = ++this._gen;
    this._stopped = false;
    this._setState("connecting", this.code);
    if (this._getToken && (!this._token || this._fresh || (tokenExp(this._token) && tokenExp(this._token) <= Date.now()))) {
      let tok;
      try {
        tok = await this._getToken();
      } catch (err) {
        if (gen === this._gen && !this._closed) this._ended(gen, 1006, "getToken failed: " + (err && err.message), false);
        return;
      }
      if (gen !== this._gen || this._closed) return;
      this._token = tok ? String(tok) : "";
      this._fresh = false;
    }
    let url = this.url;
    if (this._token) url += (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(this._token);
    let ws;
    try {
      ws = new this._WS(url, SUBPROTOCOL);
    } catch (err) {
      this._ended(gen, 1006, String(err && err.message), false);
      return;
    }
    this._ws = ws;
    this._lastError = "";
    this._lastRecv = Date.now();
    ws.onmessage = (ev) => {
      if (this._ws === ws) this._onData(ev.data);
    };
    ws.onerror = (ev) => {
      if (this._ws === ws) this._lastError = (ev && (ev.message || (ev.error && ev.error.message))) || "";
    };
    ws.onclose = (ev) => {
      if (this._ws === ws) this._ended(gen, ev.code || 1006, ev.reason || this._lastError, this._connected);
    };
  }

  // _teardown forgets the current connection and its timers.
  _teardown() {
    clearTimeout(this._refreshTimer);
    clearInterval(this._pingTimer);
    if (this._ws) {
      this._ws.onmessage = this._ws.onerror = this._ws.onclose = null;
    }
    this._ws = null;
    this._connected = false;
  }

  // _drop abandons a connection that stopped answering (no close handshake:
  // the network may be gone) and reconnects.
  _drop(reason) {
    const ws = this._ws;
    const gen = this._gen;
    if (!ws) return;
    try {
      ws.close(4000, reason);
    } catch {
      // the close handshake is not waited for
    }
    this._ended(gen, 1006, reason, this._connected);
  }

  // _ended handles the end of connection attempt gen: code is its close
  // code (1006 when none came), hadHello whether it got as far as hello.
  _ended(gen, code, reason, hadHello) {
    if (gen !== this._gen) return;
    this._teardown();
    this.code = code;
    this._failPending();
    for (const r of this._rooms.values()) r._connectionLost();
    if (this._closed) return;
    if (!hadHello) this._failures++;
    const status = httpStatus(reason);
    let stop = "";
    if (code === 4003) stop = "disconnected by an operator";
    else if (code === 4010 || status === 401) {
      if (this._getToken) this._fresh = true;
      else stop = code === 4010 ? "token expired and no getToken to renew it" : "token refused (401)";
    } else if (status === 400 || status === 403 || status === 404) stop = "upgrade refused (" + status + ")";
    if (!stop && !hadHello && this._failures >= this.opts.maxFailures) stop = this._failures + " attempts failed in a row";
    if (stop) {
      this._stopped = true;
      this._failAll("disconnected", stop);
      this._setState("disconnected", code, reason || stop, { retry: false, why: stop });
      return;
    }
    const ceil = Math.min(this.opts.maxDelay, this.opts.minDelay * 2 ** Math.min(this._retries, 30));
    const delay = Math.round(ceil / 2 + (Math.random() * ceil) / 2);
    this._retries++;
    this._setState("disconnected", code, reason, { retry: true, retryIn: delay });
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => this._open(), delay);
  }

  // _failPending rejects the requests of a connection that ended (joins
  // are not requests: their rooms are joined again on the next one).
  _failPending() {
    for (const [ref, p] of this._pending) {
      this._pending.delete(ref);
      clearTimeout(p.timer);
      if (p.kind === "join") continue;
      if (p.kind === "leave") p.resolve(); // gone with the connection
      else p.reject(new RoomcastError("disconnected", "the connection ended before the answer"));
    }
  }

  // _failAll rejects everything waiting, joins included: the client stopped.
  _failAll(code, why) {
    this._failPending();
    for (const r of this._rooms.values()) r._rejectWaiters(new RoomcastError(code, why));
  }

  _onData(data) {
    this._lastRecv = Date.now();
    if (typeof data !== "string") {
      try {
        data = new TextDecoder().decode(data);
      } catch {
        return;
      }
    }
    let f;
    try {
      f = JSON.parse(data);
    } catch {
      return;
    }
    if (!f || typeof f !== "object") return;
    const room = typeof f.room === "string" ? this._rooms.get(f.room) : undefined;
    switch (f.t) {
      case "hello":
        this._onHello(f);
        return;
      case "batch":
        if (room && Array.isArray(f.msgs)) room._onBatch(f.msgs);
        return;
      case "presence":
        if (room) room._onPresence(f);
        return;
      case "delete":
        if (room) room._onDelete(f);
        return;
      case "clear":
        if (room) room._onClear();
        return;
      case "kicked":
        if (room) room._onKicked(f);
        return;
    }
    const p = f.ref != null ? this._pending.get(f.ref) : undefined;
    if (!p) {
      if (f.t === "error") this._emit("error", new RoomcastError(f.code, f.message, { retryMs: f.retry_ms, room: f.room }));
      return;
    }
    this._pending.delete(f.ref);
    clearTimeout(p.timer);
    if (f.t === "error") {
      const err = new RoomcastError(f.code, f.message, { retryMs: f.retry_ms, room: f.room });
      if (p.kind === "join") p.room._onJoinError(err);
      else p.reject(err);
      return;
    }
    if (p.kind === "join") p.room._onJoined(f);
    else p.resolve(f);
  }

  _onHello(f) {
    this.hello = f;
    this._connected = true;
    this._failures = 0;
    this._retries = 0;
    this._setState("connected", 0, "");
    this._scheduleRefresh();
    const every = this.opts.pingInterval;
    if (every > 0) {
      this._pingTimer = setInterval(() => {
        if (Date.now() - this._lastRecv > 2 * every) this._drop("no answer from the relay");
        else this._sendFrame({ t: "ping" });
      }, every);
    }
    for (const r of this._rooms.values()) {
      if (r._want) this._sendJoin(r);
    }
  }

  _sendFrame(f) {
    const ws = this._ws;
    if (!ws || !this._connected) return false;
    try {
      ws.send(JSON.stringify(f));
      return true;
    } catch {
      return false;
    }
  }

  // _request sends f with a new ref and resolves with the answer frame.
  _request(f, kind, room) {
    if (this._closed) return Promise.reject(new RoomcastError("closed", "client closed"));
    if (!this._connected) return Promise.reject(new RoomcastError("disconnected", "not connected"));
    const ref = ++this._ref;
    return new Promise((resolve, reject) => {
      const p = { kind, room, resolve, reject, timer: 0 };
      if (kind !== "join" && this.opts.timeout > 0) {
        p.timer = setTimeout(() => {
          this._pending.delete(ref);
          reject(new RoomcastError("timeout", "no answer from the relay"));
        }, this.opts.timeout);
      }
      this._pending.set(ref, p);
      this._sendFrame({ ...f, ref });
    });
  }

  _sendJoin(room) {
    if (!this._connected) return; // sent after the next hello
    const f = { t: "join", room: room.name };
    if (room.opts.history != null) f.history = room.opts.history;
    if (room._hasPos) {
      f.since = room.seq;
      if (room.epoch) f.epoch = room.epoch;
    }
    this._request(f, "join", room).catch(() => {});
  }

  _scheduleRefresh() {
    clearTimeout(this._refreshTimer);
    const exp = tokenExp(this._token);
    if (!exp || !this._getToken) return;
    const left = exp - Date.now();
    const margin = this.opts.refreshMargin || Math.min(60000, Math.max(500, left / 4));
    const wait = left - margin;
    if (wait > MAX_TIMER) {
      // Timers cannot wait longer (they would fire at once): look again then.
      this._refreshTimer = setTimeout(() => this._scheduleRefresh(), MAX_TIMER);
      return;
    }
    this._refreshTimer = setTimeout(() => this._refresh(), Math.max(0, wait));
  }

  // _refresh asks getToken for a new token and hands it to the relay
  // (refresh frame) before the current one expires. A failure is an
  // "error" event; the relay then closes with 4010 at exp and the client
  // reconnects with a token from getToken.
  async _refresh() {
    const gen = this._gen;
    let tok;
    try {
      tok = String(await this._getToken());
    } catch (err) {
      this._emit("error", new RoomcastError("no_token", "getToken failed: " + (err && err.message)));
      return;
    }
    if (gen !== this._gen || !this._connected) return;
    if (tokenExp(tok) && tokenExp(tok) <= tokenExp(this._token)) {
      this._emit("error", new RoomcastError("no_token", "getToken returned a token that expires no later than the current one"));
      return;
    }
    try {
      await this._request({ t: "refresh", token: tok }, "refresh");
    } catch (err) {
      if (gen === this._gen) this._emit("error", err);
      return;
    }
    if (gen !== this._gen) return;
    this._token = tok;
    this._scheduleRefresh();
  }
}

export class Room extends Emitter {
  constructor(client, name, opts) {
    super();
    this.client = client;
    this.name = name;
    this.opts = { history: opts.history };
    this.seq = 0; // the last seq handed to the application (or of the room when joined)
    this.epoch = "";
    this._hasPos = false; // seq and epoch mean something: joins resume after them
    if (opts.since != null) {
      this.seq = Number(opts.since);
      this.epoch = opts.epoch ? String(opts.epoch) : "";
      this._hasPos = true;
    }
    this.state = "idle"; // idle | joining | joined | left | kicked | failed
    this.count = 0;
    this.members = null; // [{id, name}] in rooms that list members
    this._want = false; // to be joined (again after a reconnect)
    this._waiters = [];
  }

  // join joins the room (on this connection and every later one) and
  // resolves with {seq, epoch, count, members, gap} once the relay
  // answered, after the history was handed to the "message" listeners. It
  // rejects with the relay's error (forbidden, banned, room_full, ...).
  join() {
    if (this.state === "joined") return Promise.resolve(this._info);
    if (this.client._closed) return Promise.reject(new RoomcastError("closed", "client closed"));
    const p = new Promise((resolve, reject) => this._waiters.push({ resolve, reject }));
    if (!this._want) {
      this._want = true;
      this.state = "joining";
      this.client._sendJoin(this);
    }
    if (this.client._stopped) this.client.connect(); // it had given up: try again
    return p;
  }

  // send sends body (and meta, string to string) and resolves with its seq.
  send(body, opts = {}) {
    if (this.state !== "joined") return Promise.reject(new RoomcastError("not_joined", "join the room first"));
    const f = { t: "send", room: this.name, body: String(body) };
    if (opts.meta) f.meta = opts.meta;
    return this.client._request(f, "send").then((a) => a.seq);
  }

  // mod runs a moderation action (roles mod and admin): delete {seq},
  // timeout {user, secs}, ban {user}, unban {user}, slow {secs}, clear.
  mod(action, args = {}) {
    return this.client._request({ t: "mod", room: this.name, action, ...args }, "mod").then(() => undefined);
  }

  // leave leaves the room; it is not joined again on reconnects.
  leave() {
    const was = this.state;
    this._want = false;
    this.state = "left";
    this._rejectWaiters(new RoomcastError("left", "left before the join completed"));
    if (was !== "joined" && was !== "joining") return Promise.resolve();
    if (!this.client._connected) return Promise.resolve();
    return this.client._request({ t: "leave", room: this.name }, "leave").then(
      () => undefined,
      (err) => {
        if (err.code !== "disconnected" && err.code !== "not_joined") throw err;
      },
    );
  }

  _rejectWaiters(err) {
    const w = this._waiters;
    this._waiters = [];
    for (const x of w) x.reject(err);
  }

  _connectionLost() {
    if (this.state === "joined") this.state = "joining";
  }

  _onJoined(f) {
    if (!this._want) return; // left meanwhile
    const history = Array.isArray(f.history) ? f.history : [];
    const epoch = typeof f.epoch === "string" ? f.epoch : "";
    if (this._hasPos && this.epoch && epoch && epoch !== this.epoch) {
      // The room's history was started over (a relay restart, the room
      // dropped): its seqs mean something else now.
      this._emit("gap", { from: this.seq + 1, to: null, reason: "epoch", epoch, previousEpoch: this.epoch });
      this.seq = 0;
    } else if (this._hasPos && f.gap) {
      const first = history.length ? Number(history[0].seq) : Number(f.seq) + 1;
      this._emit("gap", { from: this.seq + 1, to: first - 1, reason: "aged_out", epoch });
    }
    if (epoch) this.epoch = epoch;
    this._hasPos = true;
    this.state = "joined";
    this.count = Number(f.count) || 0;
    this.members = Array.isArray(f.members) ? f.members.slice() : null;
    this._deliver(history);
    if (Number(f.seq) > this.seq) this.seq = Number(f.seq);
    this._info = { seq: this.seq, epoch: this.epoch, count: this.count, members: this.members, gap: !!f.gap };
    const w = this._waiters;
    this._waiters = [];
    for (const x of w) x.resolve(this._info);
    this._emit("joined", this._info);
  }

  _onJoinError(err) {
    if (!this._want) return;
    if (err.retryMs != null && err.code === "rate_limited") {
      // Too many joins at once (a reconnect with many rooms): try again.
      setTimeout(() => {
        if (this._want && this.state !== "joined") this.client._sendJoin(this);
      }, err.retryMs);
      return;
    }
    this._want = false;
    this.state = "failed";
    const had = this._waiters.length > 0;
    this._rejectWaiters(err);
    if (!had) this._emit("error", err); // a rejoin failed: nobody awaits it
  }

  _deliver(msgs) {
    for (const m of msgs) {
      const seq = Number(m && m.seq);
      if (!(seq > this.seq)) continue; // seen already
      this.seq = seq;
      this._emit("message", m);
    }
  }

  _onBatch(msgs) {
    if (this.state === "joined") this._deliver(msgs);
  }

  _onPresence(f) {
    if (this.state !== "joined") return;
    if (typeof f.count === "number") this.count = f.count;
    if (this.members) {
      const leaves = new Set(Array.isArray(f.leaves) ? f.leaves : []);
      this.members = this.members.filter((m) => !leaves.has(m.id));
      if (Array.isArray(f.joins)) this.members.push(...f.joins);
    }
    const p = { count: f.count };
    if (f.joins) p.joins = f.joins;
    if (f.leaves) p.leaves = f.leaves;
    this._emit("presence", p);
  }

  _onDelete(f) {
    if (this.state === "joined") this._emit("delete", { seq: f.seq });
  }

  _onClear() {
    if (this.state === "joined") this._emit("clear", {});
  }

  _onKicked(f) {
    this._want = false;
    this.state = "kicked";
    this._emit("kicked", { reason: f.reason || "" });
  }
}
