import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import type { PythonValue } from "../../src/agent-host/agent-files.ts";
import { type BrokerAddress, parseBroker } from "../../src/agent-host/broker-address.ts";
import type { DeviceTiming } from "../../src/emulator/timing.ts";
import type { JobTimings } from "../../src/server/jobs/job-timings.ts";
import { SimulatedDevice } from "../../src/simulator/simulated-device.ts";
import type { HttpTestServer } from "../http/support.ts";
import { FAST_TIMINGS, testKey } from "../server/support/test-server.ts";
import { FAST, SHORT_GPIO } from "../simulator/support.ts";

/** Debian's Chromium; the tests never download a browser. */
export const CHROMIUM = "/usr/bin/chromium";
export const SKIP = existsSync(CHROMIUM)
  ? false
  : `Chromium is not installed (${CHROMIUM} missing): install it with \`apt-get install -y chromium\` (.ci/run does).`;

export function launchChromium(extraArgs: string[] = []): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-gpu",
      "--no-first-run",
      ...extraArgs,
    ],
  });
}

/** Where the screenshots of the docs live. */
export const DOCS = join(import.meta.dirname, "../../docs");

/** Rewrites docs/<name> only when asked: MPOTA_SCREENSHOTS=1 node scripts/run-tests.mjs test/dashboard */
export async function screenshot(page: Page, name: string): Promise<void> {
  if (!process.env.MPOTA_SCREENSHOTS) return;
  mkdirSync(DOCS, { recursive: true });
  await page.screenshot({ path: join(DOCS, name), fullPage: true });
}

/**
 * Job timings of the dashboard tests: fast, with time for a device to answer and to come back
 * while Chromium and the MicroPython interpreters share the machine, and leases of 5 s rather
 * than FAST_TIMINGS' 1 s: a push stops when its lease is not renewed within 5/6 of it, which a
 * loaded test process (or PostgreSQL behind it) misses with 1 s leases, and the retry then finds
 * the receiver still in the stopped session.
 */
export const DASHBOARD_TIMINGS: JobTimings = {
  ...FAST_TIMINGS,
  firstAnswerMs: 8000,
  verifyTimeoutMs: 8000,
  leaseMs: 5000,
};

/** Opens the dashboard and logs in with the admin token. */
export async function logIn(page: Page, s: HttpTestServer): Promise<void> {
  await page.goto(s.base);
  await page.getByLabel("Admin token").fill(s.token);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.locator("header .live-live").waitFor({ timeout: 15_000 });
}

/**
 * The modelled ESP8266 at its real speed while receiving (115200 baud log,
 * 1 ms per signature check, 50 ms per sector erase), with quick boots: a
 * 52 KiB push takes about 3 s, long enough to watch the progress bar move.
 */
export const REAL_SPEED: Partial<DeviceTiming> = { otaBootMs: 200, appBootMs: 50 };

/**
 * Provisions device `id` on the test server as `mpota devices add` does: the
 * broker login of its own (client id = id) and the mpota_config.py settings
 * (CMD_KEYS) a simulated device needs to take the server's signed commands.
 */
export async function provisioned(
  s: HttpTestServer,
  id: string,
): Promise<{ broker: BrokerAddress; config: Record<string, PythonValue> }> {
  const access = await s.provision(id);
  return {
    broker: { ...parseBroker(s.brokerUrl), username: access.username, password: access.password },
    config: access.config ?? {},
  };
}

/** Simulated devices (real MicroPython agent, emulated yaota8266) on the test server's broker, each provisioned. */
export class Fleet {
  readonly devices = new Map<string, SimulatedDevice>();

  constructor(
    private readonly s: HttpTestServer,
    private readonly nextAddress: () => string,
  ) {}

  async add(
    id: string,
    firmware: Uint8Array,
    options: {
      sleepSeconds?: number;
      timing?: Partial<DeviceTiming>;
      agent?: SimulatedDeviceAgent;
    } = {},
  ): Promise<SimulatedDevice> {
    const { broker, config } = await provisioned(this.s, id);
    const d = new SimulatedDevice({
      id,
      address: this.nextAddress(),
      broker,
      key: testKey,
      firmware,
      sleepSeconds: options.sleepSeconds ?? 0,
      timing: options.timing ?? FAST,
      settings: SHORT_GPIO,
      agent: {
        vbat: 3.1,
        ...options.agent,
        config: { ...config, ...options.agent?.config },
      },
    });
    this.devices.set(id, d);
    await d.start();
    return d;
  }

  get(id: string): SimulatedDevice {
    const d = this.devices.get(id);
    if (!d) throw new Error(`no simulated device ${id}`);
    return d;
  }

  async stop(): Promise<void> {
    await Promise.all([...this.devices.values()].map((d) => d.stop()));
  }
}

type SimulatedDeviceAgent = ConstructorParameters<typeof SimulatedDevice>[0]["agent"];

/** An element as the page probes read it. */
export interface PageElement {
  textContent: string | null;
  querySelector(selector: string): PageElement | null;
  querySelectorAll(selector: string): PageElement[] & { length: number };
  getAttribute(name: string): string | null;
}

/**
 * The browser globals that functions run in the page (page.evaluate, waitForFunction) use. The
 * tests are type-checked without the DOM library; inside such a function,
 * `const { document } = globalThis as unknown as PageGlobals` reads the page's own.
 */
export interface PageGlobals {
  document: PageElement & { body: PageElement };
  DataTransfer: new () => { items: { add(file: unknown): void } };
  File: new (parts: Uint8Array[], name: string, options: { type: string }) => unknown;
  MutationObserver: new (
    callback: () => void,
  ) => { observe(target: PageElement, options: Record<string, boolean>): void };
  atob(text: string): string;
  /** With Chromium's --js-flags=--expose-gc. */
  gc(): void;
  /** Exact with Chromium's --enable-precise-memory-info. */
  performance: { memory: { usedJSHeapSize: number } };
  /** What a probe left for the test to read. */
  maxActive: number;
}
