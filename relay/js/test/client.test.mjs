// Node tests of roomcast.js against a real relay. Run by the Go test
// TestJSClientNode (relay/js_node_test.go), which starts the relay and a
// control server and sets:
//   ROOMCAST_WS    ws://host:port/ws of the relay (the same across restarts)
//   ROOMCAST_CTL   the control server: /token, /restart, /api/* (admin API)
import { test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { Client, RoomcastError } from "../roomcast.js";

const WS = process.env.ROOMCAST_WS;
const CTL = process.env.ROOMCAST_CTL;
const skip = !WS || !CTL ? "run through go test ./relay -run TestJSClientNode (needs ROOMCAST_WS and ROOMCAST_CTL)" : false;

// Fast reconnects: the tests wait for them.
const fast = { minDelay: 100, maxDelay: 1000 };

// sockets records every WebSocket the clients open, so a test can cut one.
const sockets = [];
class TrackedWebSocket extends WebSocket {
  constructor(...args) {
    super(...args);
    sockets.push(this);
  }
}

async function ctl(path, params = {}, body) {
  const res = await fetch(CTL + path + "?" + new URLSearchParams(params), {
    method: "POST",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : {};
}

const token = (sub, params = {}) => ctl("/token", { sub, name: sub, ...params }).then((r) => r.token);
const publish = (room, body) => ctl("/api/publish", {}, { room, body }).then((r) => r.seq);

async function until(what, cond, ms = 10000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("timed out waiting for " + what);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// watch records a room's messages and gaps, and fails on a duplicate or a
// message out of order within an epoch.
function watch(room) {
  const w = { msgs: [], gaps: [], events: [], errors: [] };
  let last = 0;
  room.on("gap", (g) => {
    w.gaps.push(g);
    w.events.push({ gap: g });
    if (g.reason === "epoch") last = 0;
  });
  room.on("message", (m) => {
    if (m.seq <= last) w.errors.push(`seq ${m.seq} after ${last}`);
    last = m.seq;
    w.msgs.push(m);
    w.events.push(m);
  });
  return w;
}

function states(client) {
  const s = [];
  client.on("state", (e) => s.push(e));
  return s;
}

function range(from, to) {
  const out = [];
  for (let i = from; i <= to; i++) out.push(i);
  return out;
}

test("join brings history; messages from another client arrive once each, in order; send returns the seq", { skip }, async () => {
  const room = "game:order";
  for (let i = 1; i <= 3; i++) await publish(room, "before " + i);
  const a = new Client(WS, { WebSocket, token: await token("alice", { badges: "vip" }), ...fast });
  const b = new Client(WS, { WebSocket, token: await token("bob"), ...fast });
  try {
    const ra = a.room(room, { history: 2 });
    assert.equal(a.room(room), ra, "room() returns the same object for a name");
    const wa = watch(ra);
    const info = await ra.join();
    assert.equal(info.seq, 3);
    assert.match(info.epoch, /^[a-z2-7]{8}$/);
    assert.deepEqual(wa.msgs.map((m) => m.body), ["before 2", "before 3"], "history: the latest 2");
    assert.equal(a.state, "connected");
    assert.equal(a.hello.user, "alice");

    const rb = b.room(room);
    await rb.join();
    // Bob sends 300 messages without waiting; Alice sends one with meta.
    const sends = [];
    for (let i = 0; i < 300; i++) sends.push(rb.send("load " + i));
    const mine = await ra.send("gg", { meta: { color: "red" } });
    const seqs = await Promise.all(sends);
    assert.equal(new Set([...seqs, mine]).size, 301, "every send got its own seq");
    await until("all 301 messages at alice", () => wa.msgs.length === 303);
    assert.deepEqual(wa.errors, []);
    assert.deepEqual(wa.msgs.map((m) => m.seq), range(2, 304), "contiguous and in order");
    const gg = wa.msgs.find((m) => m.seq === mine);
    assert.equal(gg.body, "gg");
    assert.equal(gg.from, "alice");
    assert.equal(gg.name, "alice");
    assert.deepEqual(gg.meta, { color: "red" });
    assert.deepEqual(gg.badges, ["vip"]);
    assert.equal(typeof gg.ts, "number");
    const loads = wa.msgs.filter((m) => m.from === "bob").map((m) => m.body);
    assert.deepEqual(loads, range(0, 299).map((i) => "load " + i), "bob's messages in the order he sent them");
    assert.deepEqual(wa.gaps, []);

    // leave: nothing more from the room.
    await ra.leave();
    assert.equal(ra.state, "left");
    await rb.send("after alice left");
    await sleep(100);
    assert.equal(wa.msgs.length, 303);
    await assert.rejects(ra.send("x"), (e) => e instanceof RoomcastError && e.code === "not_joined");
  } finally {
    a.close();
    b.close();
  }
});

test("send rejects with an Error carrying the protocol code; rate_limited has retryMs", { skip }, async () => {
  const c = new Client(WS, { WebSocket, token: await token("carol"), ...fast });
  const anon = new Client(WS, { WebSocket, ...fast });
  try {
    const r = c.room("slow:chat");
    await r.join();
    await r.send("one");
    await r.send("two");
    const err = await r.send("three").then(
      () => assert.fail("the third send within the burst of 2 was accepted"),
      (e) => e,
    );
    assert.ok(err instanceof Error, "an Error");
    assert.equal(err.code, "rate_limited");
    assert.ok(err.retryMs > 0 && err.retryMs <= 5000, "retryMs " + err.retryMs);
    assert.equal(err.room, "slow:chat");
    assert.ok(err.message.length > 0);
    // Other codes too: anonymous viewers may not send.
    const ar = anon.room("slow:chat");
    await ar.join();
    await assert.rejects(ar.send("hi"), (e) => e.code === "forbidden");
    // A join the relay refuses rejects with its code.
    await assert.rejects(c.room("-bad").join(), (e) => e.code === "bad_room");
    // The connection stays.
    assert.equal(c.state, "connected");
  } finally {
    c.close();
    anon.close();
  }
});

test("a dropped connection resumes in the same epoch: no gap, nothing twice, nothing lost", { skip }, async () => {
  const room = "game:drop";
  const c = new Client(WS, { WebSocket: TrackedWebSocket, token: await token("dave"), ...fast });
  const st = states(c);
  try {
    const r = c.room(room);
    const w = watch(r);
    await r.join();
    for (let i = 1; i <= 5; i++) await publish(room, "m" + i);
    await until("5 messages", () => w.msgs.length === 5);
    sockets.at(-1).terminate(); // the network goes: no close frame
    for (let i = 6; i <= 10; i++) await publish(room, "m" + i);
    await until("the 10 messages after the reconnect", () => w.msgs.length === 10);
    await publish(room, "m11");
    await until("a live message", () => w.msgs.length === 11);
    await sleep(100);
    assert.deepEqual(w.msgs.map((m) => m.body), range(1, 11).map((i) => "m" + i));
    assert.deepEqual(w.gaps, [], "no gap in the same epoch");
    assert.deepEqual(w.errors, []);
    assert.ok(st.some((s) => s.state === "disconnected" && s.retry === true), "told of the drop");
    assert.equal(st.filter((s) => s.state === "connected").length, 2);
  } finally {
    c.close();
  }
});

test("a resume older than the history kept: a gap with reason history, then the kept messages", { skip }, async () => {
  const room = "short:gap"; // keeps 5 messages
  const c = new Client(WS, { WebSocket: TrackedWebSocket, token: await token("gus"), ...fast, minDelay: 1000 });
  try {
    const r = c.room(room);
    const w = watch(r);
    await r.join();
    await publish(room, "m1");
    await until("m1", () => w.msgs.length === 1);
    sockets.at(-1).terminate();
    await until("the drop", () => c.state !== "connected");
    for (let i = 2; i <= 12; i++) await publish(room, "m" + i); // m2..m7 age out
    await until("the kept messages", () => w.msgs.length === 6, 5000);
    assert.deepEqual(w.gaps, [{ from: 2, to: 7, reason: "aged_out", epoch: r.epoch }]);
    assert.deepEqual(w.events.map((e) => (e.gap ? "gap" : e.body)), ["m1", "gap", "m8", "m9", "m10", "m11", "m12"]);
    assert.deepEqual(w.errors, []);
  } finally {
    c.close();
  }
});

test("a refused token (401, no getToken) and an unreachable relay stop the client", { skip }, async () => {
  const bad = new Client(WS, { WebSocket, token: "not.a.jwt", ...fast });
  const sb = states(bad);
  await until("the refusal", () => sb.some((s) => s.state === "disconnected"));
  await sleep(300);
  assert.equal(sb.filter((s) => s.state === "connecting").length, 1, "no retry after 401");
  assert.equal(sb.at(-1).retry, false);
  // join() on a stopped client tries again (and is refused again).
  await assert.rejects(bad.room("game:x").join(), (e) => e instanceof RoomcastError && e.code === "disconnected");
  assert.equal(sb.filter((s) => s.state === "connecting").length, 2);
  bad.close();

  // Nothing listens on port 1: every attempt fails before hello.
  const gone = new Client("ws://127.0.0.1:1/ws", { WebSocket, minDelay: 10, maxDelay: 20, maxFailures: 3 });
  const sg = states(gone);
  const joined = gone.room("game:x").join();
  await assert.rejects(joined, (e) => e.code === "disconnected");
  assert.equal(sg.filter((s) => s.state === "connecting").length, 3);
  assert.equal(sg.at(-1).retry, false);
  gone.close();
});

test("relay restarted mid-stream: a gap with reason epoch, then the new room's messages, once each", { skip }, async () => {
  const room = "game:restart";
  const reader = new Client(WS, { WebSocket, token: await token("erin"), ...fast, maxFailures: 100 });
  const writer = new Client(WS, { WebSocket, token: await token("frank"), ...fast, maxFailures: 100 });
  const st = states(reader);
  try {
    const rr = reader.room(room, { history: 50 });
    const w = watch(rr);
    await rr.join();
    const rw = writer.room(room);
    await rw.join();
    const epoch1 = rr.epoch;

    // The writer keeps sending, across the restart; what it got acked in
    // each epoch must reach the reader exactly once.
    const acked = [];
    let writing = true;
    const loop = (async () => {
      for (let i = 0; writing; i++) {
        try {
          acked.push({ seq: await rw.send("w" + i), epoch: rw.epoch, body: "w" + i });
        } catch (e) {
          if (e.code !== "disconnected" && e.code !== "not_joined") throw e;
        }
        await sleep(5);
      }
    })();
    await until("messages before the restart", () => w.msgs.length >= 20);
    await ctl("/restart");
    await until("the reader's rejoin in a new epoch", () => rr.state === "joined" && rr.epoch !== epoch1, 15000);
    await until("messages after the restart", () => acked.filter((a) => a.epoch !== epoch1).length >= 20, 15000);
    writing = false;
    await loop;
    const lastAcked = acked.at(-1);
    await until("the last acked message at the reader", () => w.msgs.some((m) => m.body === lastAcked.body));

    assert.deepEqual(w.errors, []);
    assert.equal(w.gaps.length, 1, "exactly one gap: " + JSON.stringify(w.gaps));
    const g = w.gaps[0];
    assert.equal(g.reason, "epoch");
    assert.equal(g.epoch, rr.epoch);
    assert.equal(g.to, null);
    const gapAt = w.events.findIndex((e) => e.gap);
    const before = w.events.slice(0, gapAt);
    const after = w.events.slice(gapAt + 1);
    assert.equal(g.from, before.at(-1).seq + 1);
    assert.deepEqual(before.map((m) => m.seq), range(1, before.length), "old epoch: contiguous from 1");
    assert.deepEqual(after.map((m) => m.seq), range(1, after.length), "new epoch: contiguous from 1");
    const seen = new Set([...before.map((m) => epoch1 + ":" + m.seq + ":" + m.body), ...after.map((m) => rr.epoch + ":" + m.seq + ":" + m.body)]);
    // Everything acked in the new epoch reached the reader; of the old
    // epoch, what was acked before the gap (the rest went with the relay).
    for (const a of acked) {
      if (a.epoch === epoch1 && a.seq >= g.from) continue;
      assert.ok(seen.has(a.epoch + ":" + a.seq + ":" + a.body), "acked but not received: " + JSON.stringify(a));
    }
    assert.ok(st.some((s) => s.state === "disconnected" && s.code === 1001), "the shutdown's 1001 was seen: " + JSON.stringify(st.map((s) => s.code)));
  } finally {
    reader.close();
    writer.close();
  }
});

test("getToken is called before exp and the token refreshed on the connection (no 4010)", { skip }, async () => {
  let calls = 0;
  const c = new Client(WS, {
    WebSocket,
    token: await token("gina", { ttl: 3 }),
    getToken: async () => {
      calls++;
      return token("gina", { ttl: 3600 });
    },
    ...fast,
  });
  const st = states(c);
  try {
    const r = c.room("game:refresh");
    const w = watch(r);
    await r.join();
    await sleep(4000); // past the first token's exp
    assert.equal(calls, 1, "getToken called once, before exp");
    assert.deepEqual(st.filter((s) => s.state === "disconnected"), [], "never disconnected");
    const seq = await r.send("still here");
    await until("the message", () => w.msgs.some((m) => m.seq === seq));
  } finally {
    c.close();
  }
});

test("after close 4010 getToken is called and the client reconnects and resumes", { skip }, async () => {
  let calls = 0;
  const errors = [];
  // The first token expires in 2 s; the refresh before exp gets the same
  // token again (so the client cannot refresh and the relay closes with
  // 4010); after the 4010 a long one.
  let short = "";
  const c = new Client(WS, {
    WebSocket,
    getToken: async () => {
      calls++;
      if (calls === 3) return token("hank");
      if (!short) short = await token("hank", { ttl: 2 });
      return short;
    },
    ...fast,
  });
  c.on("error", (e) => errors.push(e.code));
  const st = states(c);
  try {
    const room = "game:expiry";
    const r = c.room(room);
    const w = watch(r);
    await r.join();
    await publish(room, "one");
    await until("4010", () => st.some((s) => s.code === 4010), 6000);
    await publish(room, "two");
    await until("the reconnect", () => c.state === "connected" && r.state === "joined");
    await until("both messages", () => w.msgs.length === 2);
    assert.deepEqual(w.msgs.map((m) => m.body), ["one", "two"]);
    assert.deepEqual(w.gaps, []);
    assert.equal(calls, 3, "getToken: first connection, refresh before exp, after 4010");
    assert.deepEqual(errors, ["no_token"], "the refresh that could not be done is reported");
    assert.equal(st.find((s) => s.code === 4010).retry, true);
  } finally {
    c.close();
  }
});

test("close 4003 (an operator's disconnect) stops reconnecting until connect()", { skip }, async () => {
  const c = new Client(WS, { WebSocket, token: await token("ivy"), ...fast });
  const st = states(c);
  try {
    const r = c.room("game:kick");
    const w = watch(r);
    await r.join();
    await ctl("/api/disconnect", {}, { user: "ivy" });
    await until("the disconnect", () => c.state === "disconnected");
    await sleep(500);
    assert.equal(c.state, "disconnected");
    const last = st.at(-1);
    assert.equal(last.code, 4003);
    assert.equal(last.retry, false);
    await publish("game:kick", "while away");
    c.connect();
    await until("rejoined after connect()", () => r.state === "joined");
    await until("the message sent while away", () => w.msgs.length === 1);
    assert.equal(w.msgs[0].body, "while away");
  } finally {
    c.close();
  }
});

test("moderation events: delete, clear, presence, kicked", { skip }, async () => {
  const room = "game:mod";
  const mod = new Client(WS, { WebSocket, token: await token("mia", { role: "mod" }), ...fast });
  const user = new Client(WS, { WebSocket, token: await token("ned"), ...fast });
  try {
    const rm = mod.room(room);
    await rm.join();
    const presence = [];
    rm.on("presence", (p) => presence.push(p));
    const ru = user.room(room);
    const deletes = [];
    let clears = 0;
    const kicks = [];
    ru.on("delete", (d) => deletes.push(d));
    ru.on("clear", () => clears++);
    ru.on("kicked", (k) => kicks.push(k));
    await ru.join();
    await until("ned's join", () => presence.some((p) => p.joins && p.joins.some((j) => j.id === "ned")));
    assert.equal(rm.count, 2);
    const seq = await ru.send("oops");
    await rm.mod("delete", { seq });
    await until("the delete", () => deletes.length === 1);
    assert.deepEqual(deletes, [{ seq }]);
    await rm.mod("clear");
    await until("the clear", () => clears === 1);
    await rm.mod("ban", { user: "ned" });
    await until("the kick", () => kicks.length === 1);
    assert.equal(ru.state, "kicked");
    assert.equal(typeof kicks[0].reason, "string");
    await assert.rejects(ru.join(), (e) => e.code === "banned");
  } finally {
    mod.close();
    user.close();
  }
});

test("a token that expires in a year is not refreshed now (timers cannot wait that long)", async () => {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const tok = b64({ alg: "HS256" }) + "." + b64({ sub: "x", exp: Math.floor(Date.now() / 1000) + 365 * 86400 }) + ".sig";
  let calls = 0;
  // A stand-in WebSocket that says hello: no relay needed.
  class HelloWS {
    constructor() {
      setTimeout(() => this.onmessage && this.onmessage({ data: JSON.stringify({ t: "hello", user: "x" }) }), 1);
    }
    send() {}
    close() {}
  }
  const c = new Client("ws://relay.invalid/ws", { token: tok, getToken: async () => (calls++, tok), WebSocket: HelloWS });
  await until("hello", () => c.state === "connected");
  await sleep(200);
  c.close();
  assert.equal(calls, 0);
});
