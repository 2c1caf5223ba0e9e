import { shorten } from "../../protocol/mqtt-contract.ts";
import { RequestError } from "../base/request-error.ts";

/** Letters, digits and `_ . : -`, starting with a letter or digit, at most 32. */
export const TAG_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,31}$/;
export const MAX_TAGS_PER_DEVICE = 32;

/** Why `tag` cannot be a tag, or undefined when it can. */
export function tagProblem(tag: string): string | undefined {
  return TAG_PATTERN.test(tag)
    ? undefined
    : `"${shorten(tag)}" is not a tag (1 to 32 letters, digits, "_", ".", ":" or "-", starting with a letter or digit)`;
}

/** Checks a list of tags from a request; returns them without duplicates, sorted. */
export function parseTags(value: unknown): string[] {
  if (!Array.isArray(value) || value.some((t) => typeof t !== "string")) {
    throw new RequestError('"tags" must be a list of strings, for example ["garden", "battery"].');
  }
  const tags = [...new Set((value as string[]).map((t) => t.trim()))].sort();
  for (const tag of tags) {
    const problem = tagProblem(tag);
    if (problem) throw new RequestError(`Cannot tag the device: ${problem}.`);
  }
  if (tags.length > MAX_TAGS_PER_DEVICE) {
    throw new RequestError(`A device carries at most ${MAX_TAGS_PER_DEVICE} tags, not ${tags.length}.`);
  }
  return tags;
}
