import pkg from "../package.json" with { type: "json" };

// Replaced by `bun build --define INDRANET_BUILD_VERSION=…` so a binary reports the commit it was
// built from; when running from source the identifier does not exist and package.json answers.
declare const INDRANET_BUILD_VERSION: string | undefined;

export const VERSION: string =
  typeof INDRANET_BUILD_VERSION === "string" ? INDRANET_BUILD_VERSION : pkg.version;
