/**
 * Every exit code of the `mpota` CLI, one meaning each: the single source
 * the error classes take their `exitCode` from. Users script against these
 * numbers, so a number is never reused for another meaning; a new meaning
 * gets a free number. The README's table is checked against this one
 * (test/cli/exit-codes.test.ts), and so is that no two classes declare one.
 */
export interface ExitCodeEntry {
  readonly code: number;
  /** One line for the README's table. */
  readonly meaning: string;
}

export const EXIT_CODES = {
  success: { code: 0, meaning: "success" },
  failure: { code: 1, meaning: "a failure without a code of its own" },
  usage: {
    code: 2,
    meaning:
      "bad options or input: the command cannot be done as asked (also an unknown `--board`, a flash size no ESP8266 has, a block size the receiver cannot take)",
  },
  file: { code: 3, meaning: "a file is missing, unreadable, or would be overwritten" },
  key: { code: 4, meaning: "a key file cannot be used (missing, malformed, not a yaota8266 key)" },
  otaFile: { code: 5, meaning: "a `.ota` file is damaged or is not one" },
  configH: { code: 6, meaning: "a `config.h` cannot be read or does not describe a yaota8266 build" },
  emulatorBind: { code: 7, meaning: "`emulate` cannot take its UDP address" },
  espImage: { code: 9, meaning: "an ESP8266 image cannot be read (truncated, or not in its format)" },
  firmwareRefused: { code: 10, meaning: "the firmware is refused by the checks before flashing or pushing" },
  inspectFindings: { code: 11, meaning: "`inspect` found errors (the report is printed first)" },
  flashPlan: { code: 12, meaning: "the bootloader and the firmware cannot be combined into one flash image" },
  fileTooLarge: {
    code: 13,
    meaning: "a file is larger than any ESP8266 flash (16 MiB): refused before it is read",
  },
  esp32Image: {
    code: 14,
    meaning: "an ESP32 app image cannot be read (truncated, not in its format, or a merged `firmware.bin`)",
  },
  brokerConnect: { code: 20, meaning: "the MQTT broker cannot be reached or refused the connection" },
  brokerListen: {
    code: 21,
    meaning: "the embedded broker cannot listen (port taken, or not with the TLS certificate and key given)",
  },
  requestRefused: {
    code: 22,
    meaning:
      "the server refused the request (unknown device or firmware, bad input, a downgrade without `--allow-downgrade`, an app of another name without `--replace-app`, a conflicting job)",
  },
  noServer: { code: 23, meaning: "the broker answered, but no mpota server replied" },
  storage: {
    code: 24,
    meaning:
      "the database or firmware store cannot be used (unreachable, damaged, locked, another store, or not writable: the message names the path)",
  },
  schemaTooNew: { code: 25, meaning: "the database was written by a newer mpota" },
  firmwareIntegrity: { code: 26, meaning: "a stored image's bytes do not match its identity, or it is gone" },
  pushAborted: { code: 27, meaning: "a push was stopped because the server is shutting down" },
  jobFailed: { code: 28, meaning: "`update --follow` saw the job end without success" },
  httpListen: { code: 29, meaning: "the HTTP server cannot listen on its address and port" },
  push: { code: 30, meaning: "a push could not be completed" },
  deviceSilent: { code: 31, meaning: "the device never answered the push" },
  deviceStopped: { code: 32, meaning: "the device answered, then stopped before the image was complete" },
  pushTarget: {
    code: 33,
    meaning:
      "the push target is not one device: broadcast, multicast, 0.0.0.0, or a name that does not resolve",
  },
  agentHost: { code: 40, meaning: "a simulated device's agent cannot do what was asked" },
  simulator: {
    code: 41,
    meaning: "a simulated device cannot take its address, or was used in a way its state does not allow",
  },
  simulatorBroker: { code: 42, meaning: "`simulate` finds no MQTT broker where the devices should connect" },
  rolloutStopped: { code: 43, meaning: "`rollout ... --follow` saw the rollout pause or abort" },
  credentialExists: { code: 44, meaning: "the device already has a credential: nothing was changed" },
  commandField: { code: 45, meaning: "a command's fields break the contract's rules" },
  commandKey: { code: 46, meaning: "a key cannot sign or check commands" },
  commandSignature: { code: 47, meaning: "a command does not verify: the device would ignore it" },
  brokerConfig: { code: 48, meaning: "a credential cannot be written for Mosquitto" },
  commandKeyRotation: { code: 49, meaning: "a command key rotation step cannot be taken" },
  commandSigning: {
    code: 50,
    meaning: "the server cannot sign a command for the job (the device is not provisioned)",
  },
  httpRequest: { code: 51, meaning: "an HTTP API request was refused (its status says how)" },
  appRelease: {
    code: 52,
    meaning:
      "an app folder or release is refused: a path, size, name, version or `.mpy` header breaks the rules, or a stored release is damaged",
  },
  appKey: { code: 53, meaning: "the key that signs app releases cannot be used" },
  unexpected: { code: 70, meaning: "an unexpected error: run again with `--verbose` and report it" },
  closedPipe: {
    code: 141,
    meaning: "the reader of the output went away (`mpota ... \\| head`), as a command killed by SIGPIPE",
  },
} as const satisfies Record<string, ExitCodeEntry>;

export type ExitCodeName = keyof typeof EXIT_CODES;
