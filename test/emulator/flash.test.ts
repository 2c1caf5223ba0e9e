import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { FileFlash, FlashFileError, MemoryFlash, openFlash } from "../../src/emulator/flash.ts";
import { FlashSizeError } from "../../src/firmware/flash-layout.ts";

const dir = mkdtempSync(join(tmpdir(), "mpota-flash-"));
after(() => rmSync(dir, { recursive: true, force: true }));

describe("memory flash", () => {
  it("reads 0xFF when erased and has the requested size", () => {
    const flash = new MemoryFlash(512 * 1024);
    assert.equal(flash.size, 0x80000);
    assert.deepEqual(flash.read(0x7fff0, 16), new Uint8Array(16).fill(0xff));
  });

  it("writes with NOR semantics: bits only go from 1 to 0 until the sector is erased", () => {
    const flash = new MemoryFlash();
    flash.write(0x1000, new Uint8Array([0xf0, 0x0f, 0xaa]));
    flash.write(0x1000, new Uint8Array([0x3c, 0xff, 0x55]));
    assert.deepEqual(flash.read(0x1000, 4), new Uint8Array([0x30, 0x0f, 0x00, 0xff]));
    flash.eraseSector(1);
    assert.deepEqual(flash.read(0x1000, 3), new Uint8Array([0xff, 0xff, 0xff]));
    flash.write(0x1000, new Uint8Array([0x3c]));
    assert.equal(flash.read(0x1000, 1)[0], 0x3c);
  });

  it("refuses access beyond its end and sizes no ESP8266 has", () => {
    const flash = new MemoryFlash();
    assert.throws(() => flash.write(0xffffe, new Uint8Array(4)), RangeError);
    assert.throws(() => flash.eraseSector(256), RangeError);
    assert.throws(() => new MemoryFlash(3 * 1024 * 1024), FlashSizeError);
  });
});

describe("file flash", () => {
  it("creates a missing file 0xFF-filled at the flash size", () => {
    const path = join(dir, "new.flash");
    const flash = new FileFlash(path, 512 * 1024);
    flash.close();
    assert.equal(statSync(path).size, 512 * 1024);
    assert.ok(readFileSync(path).every((b) => b === 0xff));
  });

  it("writes through to the file, and a new instance sees the contents", () => {
    const path = join(dir, "persist.flash");
    const first = openFlash({ path });
    first.eraseSector(0x3c);
    first.write(0x3c000, new Uint8Array([1, 2, 3, 4]));
    // Written through at once, before close().
    assert.deepEqual(
      new Uint8Array(readFileSync(path).subarray(0x3c000, 0x3c005)),
      new Uint8Array([1, 2, 3, 4, 0xff]),
    );
    first.close();
    assert.throws(() => first.read(0, 1), /closed/);
    const second = openFlash({ path });
    assert.deepEqual(second.read(0x3c000, 5), new Uint8Array([1, 2, 3, 4, 0xff]));
    second.close();
  });

  it("refuses a file of the wrong size, saying which size it is and what to do", () => {
    const path = join(dir, "small.flash");
    writeFileSync(path, new Uint8Array(512 * 1024).fill(0xff));
    assert.throws(
      () => new FileFlash(path, 1024 * 1024),
      (error: unknown) =>
        error instanceof FlashFileError &&
        error.exitCode === 3 &&
        /is 524288 bytes, but the emulated flash is 1M \(1048576 bytes\)/.test(error.message) &&
        /--flash-size the file was made with \(512K\)/.test(error.message),
    );
    // The file is left as it was.
    assert.equal(statSync(path).size, 512 * 1024);
  });

  it("refuses a directory", () => {
    assert.throws(() => new FileFlash(dir), FlashFileError);
  });
});
