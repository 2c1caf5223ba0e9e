/**
 * Who may use the MQTT broker (docs/security.md): the server, people and
 * tools, and devices. The server and the admin have fixed user names; a
 * device's user name is its device id, and ids starting with
 * {@link RESERVED_ID_PREFIX} are never device ids, so the three cannot be
 * confused (a device called `mpota-admin` would otherwise get the admin's
 * rights, and the admin's `%u` pattern lines would cover a device).
 */
export const SERVER_USERNAME = "mpota-server";
export const ADMIN_USERNAME = "mpota-admin";
export const RESERVED_ID_PREFIX = "mpota-";
