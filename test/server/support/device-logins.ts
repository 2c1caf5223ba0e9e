import type { DeviceAccess } from "../../../src/simulator/fleet.ts";

/**
 * Device credentials of the test servers' embedded brokers, by broker
 * address: a test helper that plays a device (MqttDevice, DeviceTwin, a
 * simulated fleet) asks here for the login of its id, the way a real device
 * has one from `mpota devices add`.
 */
type Provisioner = (id: string) => Promise<DeviceAccess>;
interface Entry {
  provision: Provisioner;
  login: boolean;
}
/** Every running test server, by the address of the broker it uses (several servers may share one). */
const provisioners = new Map<string, Entry[]>();

function brokerKey(url: string): string {
  const u = new URL(url);
  return `${u.hostname}:${u.port || "1883"}`;
}

/**
 * Registers the server whose devices connect to the broker at `url`. `login`:
 * the devices log in with their own credential (the embedded broker); else
 * (an external broker with logins of its own) they are only provisioned, so
 * the server keeps their command counters. Returns the call that unregisters it.
 */
export function registerProvisioner(url: string, provision: Provisioner, login = true): () => void {
  const key = brokerKey(url);
  const entry: Entry = { provision, login };
  provisioners.set(key, [...(provisioners.get(key) ?? []), entry]);
  return () => {
    const rest = (provisioners.get(key) ?? []).filter((e) => e !== entry);
    if (rest.length > 0) provisioners.set(key, rest);
    else provisioners.delete(key);
  };
}

/**
 * Provisions device `id` with every server using the broker at `url` (so
 * any of them can sign its jobs); the login of the server whose embedded
 * broker it is, when there is one, else undefined (also for a broker no
 * test server uses).
 */
export async function deviceLogin(url: string, id: string): Promise<DeviceAccess | undefined> {
  let login: DeviceAccess | undefined;
  for (const entry of provisioners.get(brokerKey(url)) ?? []) {
    const access = await entry.provision(id);
    if (entry.login && login === undefined) login = access;
  }
  return login;
}
