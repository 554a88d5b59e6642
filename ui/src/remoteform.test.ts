import { describe, expect, it } from "vitest";
import { parseUploadLimit, presentedHostKey } from "./remoteform";

describe("presentedHostKey", () => {
  it("finds the fingerprint a CF-O008 message names", () => {
    const fp = "SHA256:" + "A".repeat(40) + "b+/";
    expect(presentedHostKey(`the SFTP server's host key ${fp} is not confirmed yet`)).toBe(fp);
  });
  it("finds nothing in other messages or a cut fingerprint", () => {
    expect(presentedHostKey("the destination refused the credentials")).toBeNull();
    expect(presentedHostKey("host key SHA256:abc is not confirmed")).toBeNull();
  });
});

describe("parseUploadLimit", () => {
  it("reads MB/s as bytes per second, with a point or a comma", () => {
    expect(parseUploadLimit("2.5")).toBe(2_500_000);
    expect(parseUploadLimit(" 1,25 ")).toBe(1_250_000);
    expect(parseUploadLimit(".5")).toBe(500_000);
    expect(parseUploadLimit("10")).toBe(10_000_000);
  });
  it("an empty field is no limit", () => {
    expect(parseUploadLimit("")).toBeNull();
    expect(parseUploadLimit("   ")).toBeNull();
  });
  it("anything else is 0, which the backend refuses (never saved as no limit)", () => {
    for (const bad of ["fast", "2 MB/s", "-1", "0", "1e3", "1.2.3", "Infinity"]) {
      expect(parseUploadLimit(bad), bad).toBe(0);
    }
  });
});
