import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Command, CommanderError } from "commander";
import { connectAsync, type MqttClient } from "mqtt";
import type { Browser, Dialog, Page } from "playwright-core";
import { MemoryIo } from "../../src/cli/io.ts";
import { registerUpdateCommand } from "../../src/cli/update.ts";
import { MpotaError } from "../../src/errors.ts";
import type { JobDetail, JobView } from "../../src/server/api/api.ts";
import { RequestError } from "../../src/server/base/request-error.ts";
import { BridgeClient } from "../../src/server/bridge/bridge-client.ts";
import { launchChromium, logIn, SKIP as NO_CHROMIUM } from "../dashboard/support.ts";
import { call, type HttpTestServer, startHttpServer } from "../http/support.ts";
import { DeviceTwin } from "../server/support/device-twin.ts";
import { tempDir } from "../server/support/test-server.ts";
import { eventually } from "../server/support/wait.ts";
import { buildMicroPythonImage, imageIdentity } from "../support/images.ts";

// Issue 14, "downgrades need a word": every path that updates a device refuses a firmware older
// than the one the device runs unless the request says allowDowngrade, with the same message, no
// job, and the device left as it was; with the word, the device really ends up on the older
// firmware. Real server, embedded Aedes broker, emulated ESP8266 twins with yaota8266 on UDP.

const SENSOR_1 = buildMicroPythonImage({ size: 40 * 1024, seed: 141 });
const SENSOR_2 = buildMicroPythonImage({ size: 42 * 1024, seed: 142 });
const VALVE_1 = buildMicroPythonImage({ size: 24 * 1024, seed: 143 });
const VALVE_2 = buildMicroPythonImage({ size: 26 * 1024, seed: 144 });
const LAMP_2 = buildMicroPythonImage({ size: 30 * 1024, seed: 145 });
const LAMP_1_5 = buildMicroPythonImage({ size: 28 * 1024, seed: 146 });
/** An image the store never sees: a device flashed by hand. */
const HAND_FLASHED = buildMicroPythonImage({ size: 36 * 1024, seed: 147 });

/** What a user sees when a single update would downgrade `device` from sensor 2.0 to 1.0, on every path. */
const refusal = (device: string) =>
  `Refusing to update ${device} to sensor 1.0: it would downgrade 1 device (${device} runs sensor 2.0, newer than 1.0). If that is what you want, pass --allow-downgrade (allowDowngrade: true).`;

/** Runs `mpota update ARGS` as bin/mpota does: output captured, the error's message and exit code. */
async function mpotaUpdate(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const io = new MemoryIo();
  const program = new Command("mpota").exitOverride();
  program.configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });
  registerUpdateCommand(program, io);
  for (const sub of program.commands) {
    sub.exitOverride().configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });
  }
  try {
    await program.parseAsync(["node", "mpota", "update", ...args]);
    return { code: 0, stdout: io.stdout, stderr: io.stderrText };
  } catch (error) {
    if (error instanceof CommanderError) return { code: 2, stdout: io.stdout, stderr: io.stderrText };
    if (!(error instanceof MpotaError)) throw error;
    io.err(`mpota: ${error.message}\n`);
    return { code: error.exitCode, stdout: io.stdout, stderr: io.stderrText };
  }
}

describe("downgrades need a word, on every path that updates a device", () => {
  const data = tempDir("mpota-attack-downgrade-");
  let s: HttpTestServer;
  let bridge: BridgeClient;
  let ha: MqttClient;
  const haSeen: Array<{ topic: string; text: string }> = [];
  const twins = new Map<string, DeviceTwin>();

  const addTwin = async (id: string, image: Uint8Array) => {
    const twin = new DeviceTwin({ url: s.url, id, image });
    twins.set(id, twin);
    await twin.start();
  };
  const twin = (id: string) => twins.get(id) as DeviceTwin;
  const jobsOf = async (device: string): Promise<JobView[]> =>
    (await call(s, "GET", `/api/v1/jobs?device=${device}`)).body;
  /** Nothing happened to the device: no job, no command on its topic, still the one firmware it booted. */
  const unchanged = async (device: string, image: Uint8Array) => {
    assert.deepEqual(await jobsOf(device), [], `no job for ${device}`);
    const commands = twin(device).mqtt?.commands ?? [];
    assert.deepEqual(
      commands.filter((c) => c !== ""),
      [],
      `no command reached ${device}`,
    );
    assert.deepEqual(twin(device).boots, [imageIdentity(image)], `${device} still runs what it booted`);
  };
  /** The job ends, and the device booted `image` (the older firmware). */
  const endsOn = async (job: JobView, image: Uint8Array) => {
    let last = "";
    const end = await eventually(
      async () => {
        const j: JobDetail = (await call(s, "GET", `/api/v1/jobs/${job.id}`)).body;
        last = `${j.state}: ${j.steps.map((step) => step.kind).join(", ")}`;
        return ["succeeded", "failed", "cancelled"].includes(j.state) && j;
      },
      `job ${job.id} ends`,
      30_000,
    ).catch((error: Error) => {
      throw new Error(`${error.message}; it is ${last}`);
    });
    assert.equal(end.state, "succeeded", end.error ?? "");
    assert.equal(twin(job.device).boots.at(-1), imageIdentity(image));
    return end;
  };

  before(async () => {
    s = await startHttpServer(data.dir, {}, { homeAssistant: { prefix: "ha" } });
    const add = async (bytes: Uint8Array, name: string, version: string) =>
      s.server.library.add({ bytes, name, version });
    await add(SENSOR_1, "sensor", "1.0");
    await add(SENSOR_2, "sensor", "2.0");
    await add(VALVE_1, "valve", "1.0");
    await add(VALVE_2, "valve", "2.0");
    // Added last: lamp 1.5 is the newest of its line in the store, but older than lamp 2.0.
    await add(LAMP_2, "lamp", "2.0");
    await add(LAMP_1_5, "lamp", "1.5");
    ha = await connectAsync(s.url, { clientId: `ha-${Math.random().toString(16).slice(2)}` });
    ha.on("message", (topic, payload) => haSeen.push({ topic, text: payload.toString() }));
    await ha.subscribeAsync("mpota/bridge/homeassistant/#", { qos: 1 });
    for (const id of ["porch", "shed", "barn", "hall"]) await addTwin(id, SENSOR_2);
    await addTwin("valve-a", VALVE_2);
    await addTwin("valve-b", VALVE_2);
    await addTwin("lamp-1", LAMP_2);
    await addTwin("attic", HAND_FLASHED);
    bridge = await BridgeClient.connect({ connection: { url: s.url } });
    await eventually(
      async () => (await bridge.request("devices", {})).filter((d) => d.fw !== null).length === twins.size,
      "every device reported its state",
      20_000,
    );
  });
  after(async () => {
    await bridge?.close();
    await ha?.endAsync();
    await Promise.all([...twins.values()].map((t) => t.close()));
    await s?.stop();
    data.remove();
  });

  test("HTTP POST /api/v1/update: refused without allowDowngrade; with it the device runs the older firmware", async () => {
    const refused = await call(s, "POST", "/api/v1/update", {
      json: { device: "porch", firmware: "sensor@1.0" },
    });
    assert.equal(refused.status, 400);
    assert.equal(refused.body.error, refusal("porch"));
    await unchanged("porch", SENSOR_2);

    const allowed = await call(s, "POST", "/api/v1/update", {
      json: { device: "porch", firmware: "sensor@1.0", allowDowngrade: true },
    });
    assert.equal(allowed.status, 201, JSON.stringify(allowed.body));
    const end = await endsOn(allowed.body, SENSOR_1);
    assert.equal(end.allowDowngrade, true);
    assert.match(
      end.steps[0]?.message ?? "",
      /requested\. A downgrade from sensor 2\.0, allowed on request \(allowDowngrade\)\.$/,
    );
  });

  test("bridge request update: refused without allowDowngrade, a bad allowDowngrade refused; with it, done", async () => {
    await assert.rejects(
      bridge.request("update", { device: "shed", firmware: "sensor@1.0" }),
      (error: unknown) => error instanceof RequestError && error.message === refusal("shed"),
    );
    await assert.rejects(
      bridge.request("update", {
        device: "shed",
        firmware: "sensor@1.0",
        allowDowngrade: "yes" as unknown as boolean,
      }),
      (error: unknown) =>
        error instanceof RequestError && error.message === '"allowDowngrade" must be true or false.',
    );
    await unchanged("shed", SENSOR_2);

    const job = await bridge.request("update", {
      device: "shed",
      firmware: "sensor@1.0",
      allowDowngrade: true,
    });
    await endsOn(job, SENSOR_1);
  });

  test("mpota update: exit 22 with the message; --allow-downgrade goes ahead", async () => {
    const refused = await mpotaUpdate(["barn", "sensor@1.0", "--mqtt", s.brokerUrl, "--data", data.dir]);
    assert.equal(refused.code, 22);
    assert.equal(refused.stdout, "");
    assert.equal(refused.stderr, `mpota: ${refusal("barn")}\n`);
    await unchanged("barn", SENSOR_2);

    const allowed = await mpotaUpdate([
      "barn",
      "sensor@1.0",
      "--allow-downgrade",
      "--follow",
      "--mqtt",
      s.brokerUrl,
      "--data",
      data.dir,
    ]);
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.match(
      allowed.stdout,
      /^Job j-[0-9a-f]+: update barn to firmware sensor 1\.0 .*\nbarn now runs firmware sensor 1\.0\.\n$/s,
    );
    assert.equal(twin("barn").boots.at(-1), imageIdentity(SENSOR_1));
  });

  test("Home Assistant install (which cannot say allowDowngrade): refused, logged, and the entity says why", async () => {
    const stateTopic = "mpota/bridge/homeassistant/lamp-1/state";
    const expected =
      "Refusing to update lamp-1 to lamp 1.5: it would downgrade 1 device (lamp-1 runs lamp 2.0, newer than 1.5). If that is what you want, pass --allow-downgrade (allowDowngrade: true).";
    const entity = await eventually(() => {
      const text = haSeen.findLast((m) => m.topic === stateTopic)?.text;
      return text ? (JSON.parse(text) as Record<string, unknown>) : undefined;
    }, "lamp-1's entity state");
    assert.equal(entity.installed_version, "2.0");
    assert.equal(entity.latest_version, "1.5");
    assert.equal(entity.release_summary, expected);

    await ha.publishAsync("mpota/bridge/homeassistant/lamp-1/install", "install", { qos: 1 });
    const logged = await eventually(
      () => s.logs.find("Home Assistant install refused", { device: "lamp-1" })[0],
      "the refusal in the log",
    );
    assert.equal(logged.err, expected);
    await unchanged("lamp-1", LAMP_2);
  });

  test("a device running firmware the store does not know cannot be compared: the update goes ahead, and its log says so", async () => {
    const job = await call(s, "POST", "/api/v1/update", {
      json: { device: "attic", firmware: "sensor@1.0" },
    });
    assert.equal(job.status, 201, JSON.stringify(job.body));
    const end = await endsOn(job.body, SENSOR_1);
    assert.equal(end.allowDowngrade, false);
    assert.match(
      end.steps[0]?.message ?? "",
      new RegExp(
        `The device runs firmware ${imageIdentity(HAND_FLASHED)} that the store does not know, so the server cannot tell whether 1\\.0 is older; a v2 agent still refuses a version older than the highest it has accepted`,
      ),
    );
  });

  test("rollout and line update: refused naming the devices, with the same advice; the line update with allowDowngrade downgrades them", async () => {
    const lineRefusal =
      "Refusing to roll out valve 1.0: it would downgrade 2 devices (valve-a runs valve 2.0, newer than 1.0; valve-b runs valve 2.0, newer than 1.0). If that is what you want, pass --allow-downgrade (allowDowngrade: true), or leave these devices out.";
    await assert.rejects(
      bridge.request("rollout/create", { firmware: "valve@1.0", line: "valve", groups: "rest" }),
      (error: unknown) => error instanceof RequestError && error.message === lineRefusal,
    );
    const refused = await call(s, "POST", "/api/v1/update/line", { json: { firmware: "valve@1.0" } });
    assert.equal(refused.status, 400);
    assert.equal(refused.body.error, lineRefusal);
    assert.deepEqual((await call(s, "GET", "/api/v1/rollouts")).body, []);
    await unchanged("valve-a", VALVE_2);
    await unchanged("valve-b", VALVE_2);

    const bad = await call(s, "POST", "/api/v1/update/line", {
      json: { firmware: "valve@1.0", allowDowngrade: "true" },
    });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error, '"allowDowngrade" must be true or false.');

    const allowed = await call(s, "POST", "/api/v1/update/line", {
      json: { firmware: "valve@1.0", allowDowngrade: true },
    });
    assert.equal(allowed.status, 201, JSON.stringify(allowed.body));
    assert.equal(allowed.body.rollout.policy.allowDowngrade, true);
    await eventually(
      () => ["valve-a", "valve-b"].every((id) => twin(id).boots.at(-1) === imageIdentity(VALVE_1)),
      "both valves run valve 1.0",
      20_000,
    );
    const jobs = [...(await jobsOf("valve-a")), ...(await jobsOf("valve-b"))];
    assert.equal(jobs.length, 2);
    for (const j of jobs) {
      const detail: JobDetail = (await call(s, "GET", `/api/v1/jobs/${j.id}`)).body;
      assert.equal(detail.allowDowngrade, true, `${j.id} was created with the rollout's allowDowngrade`);
    }
  });

  describe("the dashboard's update form", { skip: NO_CHROMIUM }, () => {
    let browser: Browser;
    let page: Page;

    before(async () => {
      browser = await launchChromium();
      page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
      await logIn(page, s);
    });
    after(async () => {
      await browser?.close();
    });

    test("shows the refusal; the box asks first, a no sends nothing; a yes downgrades the device", async () => {
      await page.goto(`${s.base}/#/device/hall`);
      await page.getByLabel("Firmware to install").selectOption({ label: "sensor 1.0" });
      await page.getByRole("button", { name: "Update hall" }).click();
      await page.getByRole("alert").filter({ hasText: "Refusing" }).waitFor();
      assert.equal(
        await page.getByRole("alert").filter({ hasText: "Refusing" }).textContent(),
        refusal("hall"),
      );
      await unchanged("hall", SENSOR_2);

      await page.getByLabel(/Allow downgrade/).check();
      const questions: string[] = [];
      const answer = (accept: boolean) => (dialog: Dialog) => {
        questions.push(dialog.message());
        void (accept ? dialog.accept() : dialog.dismiss());
      };
      page.once("dialog", answer(false));
      await page.getByRole("button", { name: "Update hall" }).click();
      await eventually(() => questions.length === 1, "the confirmation");
      assert.match(
        questions[0] ?? "",
        /^Allow a downgrade\? This installs sensor 1\.0 on hall even where it is older/,
      );
      await unchanged("hall", SENSOR_2);

      page.once("dialog", answer(true));
      await page.getByRole("button", { name: "Update hall" }).click();
      const [job] = await eventually(async () => {
        const list = await jobsOf("hall");
        return list.length > 0 && list;
      }, "the job");
      assert.equal(questions.length, 2);
      await endsOn(job as JobView, SENSOR_1);
      await page.getByLabel(/Allow downgrade/).waitFor();
      assert.equal(
        await page.getByLabel(/Allow downgrade/).isChecked(),
        false,
        "the box is cleared after use",
      );
    });
  });
});
