/** The most lateness one wait may pass on to the next (a stalled event loop is load, not flash). */
const MAX_CREDIT_MS = 100;

/**
 * Waits of a modelled chip's flash, in wall time, whose sum follows the
 * model: a timer fires a little late (more so on a loaded machine), and the
 * lateness of one wait is taken off the next, as the ESP8266 emulator
 * schedules its steps at the model's times instead of sleeping each one.
 * What runs between the waits (the interpreter, the host calls) still counts
 * in full.
 */
export class ModelledDelay {
  private late = 0;

  async wait(ms: number): Promise<void> {
    if (!(ms > 0)) return;
    const want = ms - this.late;
    if (want <= 0) {
      this.late = -want;
      return;
    }
    const started = performance.now();
    await new Promise((resolve) => setTimeout(resolve, want));
    this.late = Math.min(MAX_CREDIT_MS, Math.max(0, performance.now() - started - want));
  }
}
