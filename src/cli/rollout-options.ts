// The bounded number options of the rollout commands ("10%" reads as 10).
import { UsageError } from "../errors.ts";

export function numberOption(name: string, min: number, max: number): (value: string) => number {
  return (value: string) => {
    const n = Number(value.trim().replace(/%$/, ""));
    if (value.trim() === "" || !Number.isFinite(n) || n < min || n > max) {
      throw new UsageError(`${name} must be a number from ${min} to ${max}, not "${value}".`);
    }
    return n;
  };
}

export function integerOption(name: string, min: number, max: number): (value: string) => number {
  return (value: string) => {
    if (!/^\d+$/.test(value.trim())) throw new UsageError(`${name} must be a whole number, not "${value}".`);
    return numberOption(name, min, max)(value);
  };
}
