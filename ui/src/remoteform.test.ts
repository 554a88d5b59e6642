import { describe, expect, it } from "vitest";
import { presentedHostKey } from "./remoteform";

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
