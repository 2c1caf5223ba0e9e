import type { DeviceAccess } from "../../../src/simulator/fleet.ts";

/**
 * Device credentials of the test servers' embedded brokers, by broker
 * address: a test helper that plays a device (MqttDevice, DeviceTwin, a
 * simulated fleet) asks here for the login of its id, the way a real device
 * has one from `mpota devices add`.
 */
type Provisioner = (id: string) => Promise<DeviceAccess>;
const provisioners = new Map<string, { provision: Provisioner; login: boolean }>();

function brokerKey(url: string): string {
  const u = new URL(url);
  return `${u.hostname}:${u.port || "1883"}`;
}

/**
 * Registers the server whose devices connect to the broker at `url`. `login`:
 * the devices log in with their own credential (the embedded broker); else
 * (an external broker with logins of its own) they are only provisioned, so
 * the server keeps their command counters.
 */
export function registerProvisioner(url: string, provision: Provisioner, login = true): () => void {
  const key = brokerKey(url);
  const entry = { provision, login };
  provisioners.set(key, entry);
  return () => {
    if (provisioners.get(key) === entry) provisioners.delete(key);
  };
}

/**
 * Provisions device `id` with the server using the broker at `url`; its
 * login when it must use one, else undefined (also for a broker no test server uses).
 */
export async function deviceLogin(url: string, id: string): Promise<DeviceAccess | undefined> {
  const entry = provisioners.get(brokerKey(url));
  if (!entry) return undefined;
  const access = await entry.provision(id);
  return entry.login ? access : undefined;
}
