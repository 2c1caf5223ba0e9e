import type { Principal } from "./broker-access.ts";

/**
 * Every bound of the embedded broker, by name (docs/limits.md lists them
 * with what a client sees over each). Aedes has no packet size limit of its
 * own (moscajs/aedes#831): its parser collects a whole packet, up to MQTT's
 * 256 MiB, before anything can look at it, so the packet limit is kept in
 * front of it ({@link PacketGuard}).
 */
export interface BrokerLimits {
  /** Largest packet of a device, and of any client before its CONNECT is accepted. */
  devicePacketBytes: number;
  /** Largest packet of the admin (people and tools): a bridge `firmware/add` carries a whole image. */
  adminPacketBytes: number;
  /** Largest retained message a client other than the server may leave on the broker. */
  retainedMessageBytes: number;
  /** Retained bytes (topic and payload) all clients other than the server may leave on the broker together. */
  retainedTotalBytes: number;
  /**
   * Open connections each listener (plain, TLS) keeps; further ones are closed at once, before a
   * byte is read. Each connection costs the broker memory whether or not it ever logs in.
   */
  connections: number;
}

/**
 * The bridge's largest request (`MAX_FIRMWARE_REQUEST_BYTES`, 3 MiB: an ESP32
 * app near its 1.5 MiB slot in base64 is about 2.1 MB, plus the JSON fields),
 * with room for the topic and the packet's header. The bridge imports this
 * room, not the other way round, so the figure is repeated here; a test
 * checks that the bridge's bound fits under it.
 */
export const DEFAULT_ADMIN_PACKET_BYTES = 3 * 1024 * 1024 + 16 * 1024;

export const DEFAULT_BROKER_LIMITS: BrokerLimits = {
  // A device's state is at most 2 KiB (MAX_STATE_BYTES); an ESP8266 has ~40 KB of heap for all of it.
  devicePacketBytes: 16 * 1024,
  adminPacketBytes: DEFAULT_ADMIN_PACKET_BYTES,
  retainedMessageBytes: 64 * 1024,
  retainedTotalBytes: 32 * 1024 * 1024,
  // The registry's 10,000 devices (DEFAULT_DEVICE_LIMITS) always on, with room for people, tools and the server.
  connections: 11_000,
};

/** MQTT's own largest packet (a remaining length of 4 bytes): the server's own connection is not bounded lower. */
export const MQTT_MAX_PACKET_BYTES = 268_435_455;

/** The defaults with `given` over them. */
export function brokerLimits(given: Partial<BrokerLimits> = {}): BrokerLimits {
  return { ...DEFAULT_BROKER_LIMITS, ...given };
}

/** The largest packet `principal` may send. The server is this process itself, so it is not bounded below MQTT's own limit. */
export function packetLimitOf(limits: BrokerLimits, principal: Principal): number {
  switch (principal.kind) {
    case "server":
      return MQTT_MAX_PACKET_BYTES;
    case "admin":
      return limits.adminPacketBytes;
    case "device":
      return limits.devicePacketBytes;
  }
}
