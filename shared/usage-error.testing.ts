// For tests of command lines and configs: the message of the UsageError a call throws.
import { expect } from "bun:test";
import { UsageError } from "./errors.ts";

export function usageError(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    return (error as Error).message;
  }
  throw new Error("expected a UsageError");
}
