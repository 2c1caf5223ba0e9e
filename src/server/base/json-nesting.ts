/**
 * The deepest nesting of objects and lists a request may have. Requests need
 * three or four levels; JSON.parse takes any depth, but JSON.stringify (and
 * any other recursion over the value) runs out of stack at a few thousand
 * levels, which a 60 KB request reaches: such a request is refused first.
 */
export const MAX_JSON_NESTING = 64;

/**
 * How deeply JSON text nests objects and lists, counted from its brackets
 * outside strings, without parsing it (so without recursion). Text that is
 * not JSON gives some number; JSON.parse refuses it anyway.
 */
export function jsonNesting(text: string): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // a backslash escapes the next character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) deepest = Math.max(deepest, ++depth);
    else if (c === 0x5d || c === 0x7d) depth--;
  }
  return deepest;
}

/** Why JSON text nests too deeply to be taken, or undefined when it does not. */
export function jsonNestingProblem(text: string, what: string): string | undefined {
  const depth = jsonNesting(text);
  return depth > MAX_JSON_NESTING
    ? `${what} nests objects or lists ${depth} levels deep; at most ${MAX_JSON_NESTING} are taken. Send a flat JSON object.`
    : undefined;
}
