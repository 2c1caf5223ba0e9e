import { UsageError } from "../../errors.ts";

/** The dashboard URL as given, with one trailing slash; a UsageError when it is not an http(s) URL. */
export function dashboardBase(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    parsed = new URL("invalid:");
  }
  if ((parsed.protocol !== "http:" && parsed.protocol !== "https:") || parsed.host === "") {
    throw new UsageError(
      `The dashboard URL for Home Assistant's release links must be an http:// or https:// address with a host (such as http://mpota.local:8080/), not "${url.slice(0, 100)}".`,
    );
  }
  parsed.hash = "";
  parsed.search = "";
  return parsed.href.endsWith("/") ? parsed.href : `${parsed.href}/`;
}
