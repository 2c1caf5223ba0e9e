import { DEFAULT_MAIN_APP_OFFSET } from "../protocol/config-h.ts";
import { IROM0_MAP_BASE, OTA_SERVER_IROM0_OFFSET, PACKED_RAM_SIZE } from "./flash-layout.ts";
import { hex } from "./format.ts";

export type BuildKind = "ota" | "normal" | "unknown";
export type Confidence = "high" | "medium" | "low";

/** Where a normal MicroPython build links irom0 (flash 0x9000); under yaota8266 the ota-server lives there. */
export const NORMAL_IROM0_BASE = IROM0_MAP_BASE + OTA_SERVER_IROM0_OFFSET;

/** Where an OTA build for `appOffset` links irom0: 0x40200000 + MAIN_APP_OFFSET + 0x9000 (0x40245000 by default). */
export function otaIrom0Base(appOffset = DEFAULT_MAIN_APP_OFFSET): number {
  return IROM0_MAP_BASE + appOffset + PACKED_RAM_SIZE;
}

/** How the image was linked, judged from the irom0 addresses it refers to. Plain data (the `--json` shape). */
export interface BuildKindAnalysis {
  kind: BuildKind;
  confidence: Confidence;
  /** irom0 base an OTA build for the given MAIN_APP_OFFSET has. */
  expectedIrom0Base: number;
  /**
   * The lowest irom0 address the image refers to densely (a 4 KiB page with
   * several references, in a run of referenced pages): an estimate of where
   * its irom0 is linked. Null when no page qualifies.
   */
  irom0LinkBase: number | null;
  /** For an OTA build: the MAIN_APP_OFFSET its link address implies (irom0LinkBase - 0x40209000). */
  linkedAppOffset: number | null;
  /** linkedAppOffset when it differs from the MAIN_APP_OFFSET the image was judged against; else null. */
  otherAppOffset: number | null;
  /**
   * Aligned words pointing into irom0 below irom0LinkBase (down to 0x40209000), and from it up through the image's irom0 length;
   * `all` of them from 0x40209000 to 0x40300000, and `outsideOtaRange`: those outside where this image's code lies when it is
   * linked for the MAIN_APP_OFFSET it was judged against (expectedIrom0Base up through its irom0 length).
   */
  references: { belowLinkBase: number; atLinkBase: number; all: number; outsideOtaRange: number };
  /** How many of each a file of random bytes this size would contain. */
  expectedByChance: { belowLinkBase: number; atLinkBase: number };
  /**
   * How strongly the image says it is linked for another MAIN_APP_OFFSET (set only when otherAppOffset is):
   * "strong" is grounds to refuse it, "weak" only to warn. See {@link STRONG_MIN_REFERENCES}.
   */
  offsetEvidence: "strong" | "weak" | null;
  /** One or two sentences saying what was found and how sure it is. */
  explanation: string;
}

/**
 * Strong evidence that an image is linked for another MAIN_APP_OFFSET needs
 * at least this many irom0 references (beyond what chance gives): a real
 * MicroPython build has thousands; a handful decides nothing.
 */
export const STRONG_MIN_REFERENCES = 100;
/**
 * ...and at least this many (beyond chance), and a fiftieth of all, must point
 * outside the range this image's code occupies when linked for the device's
 * offset: code linked there never refers to addresses where it is not. Where
 * the first densely referenced page lies alone (sparse first pages) is weak
 * evidence, as is a handful of references.
 */
export const STRONG_MIN_OUTSIDE = 20;
export const STRONG_OUTSIDE_SHARE = 0.02;

const PAGE = 0x1000;
const IROM0_END = 0x40300000;
/** References the first page needs to count as "densely referenced" when estimating the link base. */
const DENSE_PAGE = 4;
/** References the 16 KiB from that page on need, so that one odd page does not decide. */
const DENSE_WINDOW = 12;
/**
 * yaota8266's ota-server occupies flash 0x9000 onwards, so an OTA build's
 * MAIN_APP_OFFSET is above 0x9000: a link base below 0x40212000 means a
 * normal build (0x40209000) whose first pages are sparsely referenced.
 */
const NORMAL_BASE_LIMIT = NORMAL_IROM0_BASE + 0x9000;
/** An estimated base this close above the expected one still matches it (the first pages may be sparse). */
const MATCH_TOLERANCE = 2 * PAGE;

function significant(count: number, expected: number): boolean {
  return count - expected > 10 + 5 * Math.sqrt(expected);
}

/**
 * Tells a MicroPython OTA build from a normal one by the irom0 addresses the
 * image holds: literal pools in iram and irom0 carry the CPU addresses of
 * the functions they call, so the lowest densely referenced irom0 page is
 * close to where irom0 is linked: 0x40209000 for a normal build,
 * 0x40200000 + MAIN_APP_OFFSET + 0x9000 (0x40245000 by default) for an OTA
 * build, and nothing should point below it. This is a heuristic: counts are
 * compared with what random bytes would give, and the result says how sure
 * it is.
 */
export function classifyBuild(
  image: Uint8Array,
  options: { appOffset?: number; irom0Length: number },
): BuildKindAnalysis {
  const appOffset = options.appOffset ?? DEFAULT_MAIN_APP_OFFSET;
  const expected = otaIrom0Base(appOffset);
  const view = new DataView(image.buffer, image.byteOffset, image.byteLength);
  const refs: number[] = [];
  let words = 0;
  for (let i = 0; i + 4 <= image.length; i += 4) {
    const w = view.getUint32(i, true);
    if (w === 0xffffffff) continue; // erased padding, not content
    words++;
    if (w >= NORMAL_IROM0_BASE && w < IROM0_END) refs.push(w);
  }
  refs.sort((a, b) => a - b);
  const chance = (size: number) => (words * size) / 2 ** 32;
  const countIn = (from: number, to: number) => refs.filter((w) => w >= from && w < to).length;

  const pageChance = chance(PAGE);
  let linkBase: number | null = null;
  const pages = new Map<number, number>();
  for (const w of refs) pages.set(w - (w % PAGE), (pages.get(w - (w % PAGE)) ?? 0) + 1);
  for (const [page, count] of [...pages.entries()].sort((a, b) => a[0] - b[0])) {
    if (
      count >= DENSE_PAGE &&
      count >= 4 * pageChance + DENSE_PAGE &&
      countIn(page, page + 4 * PAGE) >= DENSE_WINDOW
    ) {
      linkBase = page;
      break;
    }
  }

  const round = (n: number) => Math.round(n * 10) / 10;
  const base = linkBase ?? expected;
  const ownEnd = Math.min(IROM0_END, base + Math.max(options.irom0Length, 16 * PAGE));
  const below = countIn(NORMAL_IROM0_BASE, base);
  const own = countIn(base, ownEnd);
  const belowChance = chance(base - NORMAL_IROM0_BASE);
  const ownChance = chance(ownEnd - base);
  const otaEnd = Math.min(IROM0_END, expected + Math.max(options.irom0Length, 16 * PAGE));
  const all = refs.length;
  const outside = all - countIn(expected, otaEnd);
  const allChance = chance(IROM0_END - NORMAL_IROM0_BASE);
  const outsideChance = chance(IROM0_END - NORMAL_IROM0_BASE - (otaEnd - expected));
  const strongOffsetEvidence =
    all - allChance >= STRONG_MIN_REFERENCES &&
    significant(outside, outsideChance) &&
    outside - outsideChance >= Math.max(STRONG_MIN_OUTSIDE, STRONG_OUTSIDE_SHARE * all);
  const counts =
    `${own} references from ${hex(base)} to ${hex(ownEnd)} (about ${ownChance.toFixed(1)} expected by chance)` +
    (base > NORMAL_IROM0_BASE
      ? `, ${below} between ${hex(NORMAL_IROM0_BASE)} and ${hex(base)} (about ${belowChance.toFixed(1)} by chance)`
      : "");
  const result = (
    kind: BuildKind,
    confidence: Confidence,
    linkedAppOffset: number | null,
    explanation: string,
  ): BuildKindAnalysis => ({
    kind,
    confidence,
    expectedIrom0Base: expected,
    irom0LinkBase: linkBase,
    linkedAppOffset,
    otherAppOffset: linkedAppOffset !== null && linkedAppOffset !== appOffset ? linkedAppOffset : null,
    references: { belowLinkBase: below, atLinkBase: own, all, outsideOtaRange: outside },
    expectedByChance: { belowLinkBase: round(belowChance), atLinkBase: round(ownChance) },
    offsetEvidence:
      linkedAppOffset !== null && linkedAppOffset !== appOffset
        ? strongOffsetEvidence
          ? "strong"
          : "weak"
        : null,
    explanation,
  });

  if (linkBase === null || !significant(own, ownChance) || significant(below, belowChance)) {
    const why =
      linkBase === null
        ? `no irom0 page between ${hex(NORMAL_IROM0_BASE)} and ${hex(IROM0_END)} is referenced densely`
        : `the references do not cluster (${counts})`;
    return result(
      "unknown",
      "low",
      null,
      `Cannot tell an OTA build from a normal one: ${why}. This check is a heuristic and the image gives it too little to go on.`,
    );
  }
  const confidence: Confidence = own - ownChance >= 50 ? "high" : "medium";
  if (linkBase < NORMAL_BASE_LIMIT) {
    return result(
      "normal",
      confidence,
      null,
      `Normal (non-OTA) build: irom0 linked at ${hex(NORMAL_IROM0_BASE)} (${confidence} confidence; ${counts}).`,
    );
  }
  const matches = linkBase >= expected && linkBase < expected + MATCH_TOLERANCE;
  const linked = matches ? appOffset : linkBase - NORMAL_IROM0_BASE;
  return result(
    "ota",
    confidence,
    linked,
    matches
      ? `OTA build: irom0 linked at ${hex(expected)} (${confidence} confidence; ${counts}).`
      : strongOffsetEvidence
        ? `OTA build, but its irom0 references start at ${hex(linkBase)}, so it seems linked for MAIN_APP_OFFSET ${hex(linked)} rather than ${hex(appOffset)} (${confidence} confidence; ${counts}; ${outside} of its ${all} irom0 references point outside ${hex(expected)}-${hex(otaEnd)}, where its code would be for ${hex(appOffset)}).`
        : `OTA build; its densely referenced irom0 pages start at ${hex(linkBase)}, which would mean MAIN_APP_OFFSET ${hex(linked)} rather than ${hex(appOffset)}, but the evidence is weak: ${outside} of its ${all} irom0 references point outside ${hex(expected)}-${hex(otaEnd)}, where its code would be for ${hex(appOffset)} (${counts}).`,
  );
}
