// The synthetic ESP32 app images live with the simulator, which starts its ESP32s with one.
export * from "../../src/simulator/synthetic-esp32-app.ts";
