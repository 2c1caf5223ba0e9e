import { readFileSync } from "node:fs";

export const fixturePath = (name: string) => new URL(`../fixtures/${name}`, import.meta.url).pathname;
export const readFixture = (name: string) => new Uint8Array(readFileSync(fixturePath(name)));
export const readFixtureText = (name: string) => readFileSync(fixturePath(name), "utf8");
