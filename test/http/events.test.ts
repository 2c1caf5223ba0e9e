import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { EventStream } from "../../src/server/http/event-stream.ts";
import { MqttDevice } from "../server/support/mqtt-device.ts";
import { tempDir } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";
import { type HttpTestServer, startHttpServer } from "./support.ts";

interface Received {
  id: string;
  event: string;
  data: string;
}

/** Reads an event stream; `events` fills as they arrive. */
async function openStream(s: HttpTestServer, lastEventId?: string) {
  const controller = new AbortController();
  const response = await fetch(`${s.base}/api/v1/events`, {
    headers: { authorization: `Bearer ${s.token}`, ...(lastEventId ? { "last-event-id": lastEventId } : {}) },
    signal: controller.signal,
  });
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /^text\/event-stream/);
  const events: Received[] = [];
  let text = "";
  const reading = (async () => {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        text += decoder.decode(chunk, { stream: true });
        let end = text.indexOf("\n\n");
        while (end >= 0) {
          const block = text.slice(0, end);
          text = text.slice(end + 2);
          const fields = Object.fromEntries(
            block
              .split("\n")
              .filter((l) => !l.startsWith(":") && l.includes(": "))
              .map((l) => [l.slice(0, l.indexOf(": ")), l.slice(l.indexOf(": ") + 2)]),
          );
          if (fields.event) events.push({ id: fields.id, event: fields.event, data: fields.data });
          end = text.indexOf("\n\n");
        }
      }
    } catch {
      // aborted
    }
  })();
  return {
    events,
    close: async () => {
      controller.abort();
      await reading;
    },
  };
}

describe("the event stream", () => {
  const data = tempDir("mpota-sse-");
  let s: HttpTestServer;

  before(async () => {
    s = await startHttpServer(data.dir, { stream: { replay: 20, heartbeatMs: 100 } });
  });
  after(async () => {
    await s.stop();
    data.remove();
  });

  test("a device's state arrives as a named event with the API's device view", async () => {
    const stream = await openStream(s);
    const dev = await MqttDevice.connect(s.url, "attic");
    try {
      const fw = imageIdentity(buildMicroPythonImage({ size: 40 * 1024, seed: 5 }));
      await dev.state({ fw, ip: "127.0.0.1", rssi: -70 });
      const event = await eventually(
        () => stream.events.find((e) => e.event === "device" && JSON.parse(e.data).fw === fw),
        "device event",
      );
      const view = JSON.parse(event.data);
      assert.deepEqual([view.id, view.ip, view.rssi, view.firmware], ["attic", "127.0.0.1", -70, null]);
    } finally {
      await dev.close();
      await stream.close();
    }
  });

  test("Last-Event-ID resumes with what was missed; an id older than the replay buffer gets reset", async () => {
    const stream = s.server.http?.stream;
    assert.ok(stream);
    const first = await openStream(s);
    stream.publish("job", { job: "j-a", n: 1 });
    const seen = await eventually(() => first.events.find((e) => e.event === "job"), "first job event");
    await first.close();
    stream.publish("job", { job: "j-a", n: 2 });
    stream.publish("job", { job: "j-a", n: 3 });
    const resumed = await openStream(s, seen.id);
    await eventually(() => resumed.events.length >= 2, "replayed events");
    assert.deepEqual(
      resumed.events.map((e) => JSON.parse(e.data).n),
      [2, 3],
    );
    await resumed.close();
    for (let i = 0; i < 50; i++) stream.publish("job", { job: "j-b", n: i });
    assert.equal(stream.bufferedEvents, 20);
    const late = await openStream(s, seen.id);
    await eventually(() => late.events.length >= 1, "reset event");
    assert.equal(late.events[0]?.event, "reset");
    await late.close();
    const foreign = await openStream(s, "abcdef-3");
    await eventually(() => foreign.events.length >= 1, "reset for an id of another process");
    assert.equal(foreign.events[0]?.event, "reset");
    await foreign.close();
  });

  test("closed streams leave nothing behind", async () => {
    const stream = s.server.http?.stream;
    assert.ok(stream);
    const open = await Promise.all([openStream(s), openStream(s), openStream(s)]);
    await eventually(() => stream.clientCount === 3, "three clients");
    for (const o of open) await o.close();
    await eventually(() => stream.clientCount === 0, "no clients after close");
    for (let i = 0; i < 1000; i++) stream.publish("job", { job: "j-c", n: i });
    assert.equal(stream.bufferedEvents, 20);
  });

  test("a client gone before its stream opens is not kept", async () => {
    const stream = new EventStream({ heartbeatMs: 60_000 });
    // The handler opens the stream only once the client has hung up (as after a slow auth check).
    let opened: () => void = () => undefined;
    const openedLate = new Promise<void>((resolve) => {
      opened = resolve;
    });
    const server = createServer((request, response) => {
      request.socket.once("close", () =>
        setTimeout(() => {
          stream.open(request, response);
          opened();
        }, 50),
      );
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    const controller = new AbortController();
    const asked = fetch(`http://127.0.0.1:${port}/`, { signal: controller.signal }).catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 100));
    controller.abort();
    await asked;
    await openedLate;
    assert.equal(stream.clientCount, 0);
    stream.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
});
