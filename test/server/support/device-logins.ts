import type { DeviceAccess } from "../../../src/simulator/fleet.ts";

/**
 * Device credentials of the test servers' embedded brokers, by broker
 * address: a test helper that plays a device (MqttDevice, DeviceTwin, a
 * simulated fleet) asks here for the login of its id, the way a real device
 * has one from `mpota devices add`.
 */
type Provisioner = (id: string) => Promise<DeviceAccess>;
const provisioners = new Map<string, Provisioner>();

function brokerKey(url: string): string {
  const u = new URL(url);
  return `${u.hostname}:${u.port || "1883"}`;
}

export function registerProvisioner(url: string, provision: Provisioner): () => void {
  const key = brokerKey(url);
  provisioners.set(key, provision);
  return () => {
    if (provisioners.get(key) === provision) provisioners.delete(key);
  };
}

/** The login of device `id` on the broker at `url`, or undefined for a broker without device credentials. */
export async function deviceLogin(url: string, id: string): Promise<DeviceAccess | undefined> {
  const provision = provisioners.get(brokerKey(url));
  return provision ? provision(id) : undefined;
}
