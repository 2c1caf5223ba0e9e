// The broker the simulated devices connect to: a check that one answers, and
// a credential of its own for every device from the server behind it.
import { connect } from "node:net";
import type { BrokerAddress } from "../agent-host/broker-address.ts";
import { MpotaError } from "../errors.ts";
import { EXIT_CODES } from "../exit-codes.ts";
import type { ProvisionedDevice } from "../server/api/admin-views.ts";
import { RequestError } from "../server/base/request-error.ts";
import type { DeviceAccess } from "../simulator/fleet.ts";
import { withBridge } from "./devices.ts";
import type { SimulateCommandOptions, SimulateDeps } from "./simulate-options.ts";

/** No MQTT broker answers where the simulated devices should connect. */
export class SimulatorBrokerError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.simulatorBroker.code;
}

/** Fails early, with advice, when nothing listens where the devices should connect. */
export function probeBroker(broker: BrokerAddress, url: string, timeoutMs = 3000): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: broker.host, port: broker.port });
    const fail = (why: string) => {
      socket.destroy();
      reject(
        new SimulatorBrokerError(
          `No MQTT broker answers at ${url} (${why}). Start the update server first (\`mpota serve\` runs a broker on port 1883), or point --mqtt at your broker.`,
        ),
      );
    };
    socket.setTimeout(timeoutMs, () => fail(`no answer in ${timeoutMs / 1000} s`));
    socket.once("error", (error: NodeJS.ErrnoException) => fail(error.code ?? error.message));
    socket.once("connect", () => {
      socket.end();
      resolve();
    });
  });
}

/**
 * Gives every simulated device a credential of its own from the server (as
 * \`mpota devices add\` does for a real one), logging in as mpota-admin with
 * the admin token of --data; a device provisioned before gets a new secret.
 */
export async function provisionFleet(
  options: SimulateCommandOptions,
  deps: SimulateDeps,
): Promise<Map<string, DeviceAccess>> {
  const ids = Array.from({ length: options.devices }, (_, i) => `${options.idPrefix}-${i + 1}`);
  const url = new URL(options.mqtt);
  url.username = "";
  url.password = "";
  const access = new Map<string, DeviceAccess>();
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = url.port ? Number(url.port) : 1883;
  await withBridge(
    { mqtt: url.toString(), base: options.base, timeout: 10, data: options.data, ...deps.admin },
    async (bridge) => {
      for (const id of ids) {
        let device: ProvisionedDevice;
        try {
          device = await bridge.request("devices/add", { id, host, port });
        } catch (error) {
          if (!(error instanceof RequestError) || !/already provisioned/.test(error.message)) throw error;
          device = await bridge.request("devices/rotate", { id, host, port });
        }
        access.set(id, {
          username: device.username,
          password: device.secret,
          config: { CMD_KEYS: device.commandKeyModuli },
          // A server from before appKeyModuli answers without it: the board then trusts no app key.
          appKeys: device.appKeyModuli ?? [],
        });
      }
    },
  );
  return access;
}
