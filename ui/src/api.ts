// The one typed door to the Rust side: every call goes through `call`, whose
// argument and result types come from the generated `Commands` table.
import { invoke } from "@tauri-apps/api/core";
import type { Commands, ErrorReport } from "./bindings";

export type CommandName = keyof Commands;

export async function call<K extends CommandName>(
  name: K,
  args: Commands[K]["args"],
): Promise<Commands[K]["result"]> {
  try {
    return await invoke<Commands[K]["result"]>(name, args as Record<string, unknown>);
  } catch (e) {
    throw toErrorReport(e);
  }
}

/** Turns whatever an invoke rejected with into an ErrorReport. */
export function toErrorReport(e: unknown): ErrorReport {
  if (e && typeof e === "object" && "code" in e && "message" in e && "next_step" in e && "kind" in e) {
    return e as ErrorReport;
  }
  return {
    kind: "internal",
    code: "CF-A999",
    message: typeof e === "string" ? e : "The app hit an unexpected problem.",
    next_step: "Copy the diagnostics report from Support and send it to support staff.",
  };
}
