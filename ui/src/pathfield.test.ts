import { describe, expect, it } from "vitest";
import { startOf, withPicked } from "./pathfield";

describe("startOf", () => {
  it("starts a single-path dialog at the typed path", () => {
    expect(startOf("  /media/usb/coffer.db ")).toBe("/media/usb/coffer.db");
  });
  it("starts a one-per-line dialog at the last path", () => {
    expect(startOf("/home/me/Documents\n/home/me/Photos\n\n", true)).toBe("/home/me/Photos");
  });
  it("is null for an empty field", () => {
    expect(startOf("")).toBeNull();
    expect(startOf(" \n \n", true)).toBeNull();
  });
});

describe("withPicked", () => {
  it("replaces a single path", () => {
    expect(withPicked("/old/coffer.db", "/new/coffer.db")).toBe("/new/coffer.db");
  });
  it("adds a line to a one-per-line field", () => {
    expect(withPicked("", "/a", true)).toBe("/a");
    expect(withPicked("/a\n", "/b", true)).toBe("/a\n/b");
  });
  it("does not add a folder twice", () => {
    expect(withPicked("/a\n/b", "/a", true)).toBe("/a\n/b");
  });
});
