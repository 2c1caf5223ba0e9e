import { type Flash, MemoryFlash } from "../../../src/emulator/flash.ts";

/**
 * Flash that garbles one program operation in the app region when armed:
 * the receiver writes a sector, one byte lands wrong, and boot8266's MD5
 * check fails on the next boot (a bad flash write, as it happens on worn or
 * PUYA chips).
 */
export class CorruptingFlash implements Flash {
  private readonly inner = new MemoryFlash(0x100000);
  /** Garble this many more writes at or above `from`. */
  armed = 0;
  corrupted = 0;

  constructor(private readonly from: number) {}

  get size(): number {
    return this.inner.size;
  }

  read(offset: number, length: number): Uint8Array {
    return this.inner.read(offset, length);
  }

  eraseSector(index: number): void {
    this.inner.eraseSector(index);
  }

  write(offset: number, data: Uint8Array): void {
    if (this.armed > 0 && offset >= this.from && data.length > 64) {
      this.armed--;
      this.corrupted++;
      const bad = new Uint8Array(data);
      bad[32] = (bad[32] as number) ^ 0x5a;
      this.inner.write(offset, bad);
      return;
    }
    this.inner.write(offset, data);
  }

  close(): void {
    this.inner.close();
  }
}
