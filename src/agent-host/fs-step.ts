/** The durable steps of the simulated device's filesystem, and the power cut that can fall before any of them. */

/** One durable change on flash. A power cut falls between two of them. */
export type FsStep =
  | { op: "create"; path: string }
  | { op: "truncate"; path: string }
  | { op: "commit"; path: string; size: number }
  | { op: "remove"; path: string }
  | { op: "rename"; path: string; to: string }
  | { op: "mkdir"; path: string }
  | { op: "rmdir"; path: string };

/** Thrown by a step that {@link DeviceFilesystem.beforeStep} chose to cut: nothing of it happened. */
export class PowerCut extends Error {
  constructor(readonly step: FsStep) {
    super(`power cut before ${step.op} ${step.path}`);
  }
}
