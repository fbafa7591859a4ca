// IP addresses and CIDR ranges, IPv4 and IPv6, as the access lists and the trusted proxies name
// them. An IPv4-mapped IPv6 address (`::ffff:203.0.113.7`, as a dual-stack socket reports an IPv4
// client) is the IPv4 address it maps, on either side of a match.

export interface IpAddress {
  v6: boolean;
  bits: bigint;
}

export interface CidrRange {
  v6: boolean;
  /** The network, host bits cleared. */
  bits: bigint;
  prefix: number;
}

const IPV4_BITS = 32;
const IPV6_BITS = 128;
const MAPPED_PREFIX = 0xffffn;

/** The address `text` spells, or undefined. Zones (`fe80::1%eth0`) and leading zeros are refused. */
export function parseAddress(text: string): IpAddress | undefined {
  if (!text.includes(":")) {
    const bits = parseIpv4(text);
    return bits === undefined ? undefined : { v6: false, bits };
  }
  const bits = parseIpv6(text);
  if (bits === undefined) return undefined;
  if (bits >> 32n === MAPPED_PREFIX) return { v6: false, bits: bits & 0xffffffffn };
  return { v6: true, bits };
}

/** `203.0.113.0/24`, `2001:db8::/32`, or a single address (a range of one). */
export function parseCidr(text: string): CidrRange | undefined {
  const slash = text.indexOf("/");
  const address = parseAddress(slash === -1 ? text : text.slice(0, slash));
  if (!address) return undefined;
  const width = address.v6 ? IPV6_BITS : IPV4_BITS;
  let prefix = width;
  if (slash !== -1) {
    const digits = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(digits)) return undefined;
    prefix = Number(digits);
    // A mapped address was written in IPv6 terms: its prefix counts the 96 bits before the IPv4 part.
    if (!address.v6 && text.includes(":")) prefix -= IPV6_BITS - IPV4_BITS;
    if (prefix < 0 || prefix > width) return undefined;
  }
  const shift = BigInt(width - prefix);
  return { v6: address.v6, bits: (address.bits >> shift) << shift, prefix };
}

/** A list of ranges an address is looked up in; the empty list matches nothing. */
export class CidrList {
  readonly #ranges: CidrRange[];

  /** `texts` are already validated (the config refuses a bad entry and names it). */
  constructor(texts: readonly string[]) {
    this.#ranges = texts.map((text) => {
      const range = parseCidr(text);
      if (!range) throw new Error(`not a CIDR range: ${text}`);
      return range;
    });
  }

  get empty(): boolean {
    return this.#ranges.length === 0;
  }

  /** Whether `text` is an address inside one of the ranges; a malformed address is in none. */
  has(text: string): boolean {
    if (this.#ranges.length === 0) return false;
    const address = parseAddress(text);
    return address !== undefined && this.contains(address);
  }

  contains(address: IpAddress): boolean {
    for (const range of this.#ranges) {
      if (range.v6 !== address.v6) continue;
      const shift = BigInt((range.v6 ? IPV6_BITS : IPV4_BITS) - range.prefix);
      if (address.bits >> shift === range.bits >> shift) return true;
    }
    return false;
  }
}

function parseIpv4(text: string): bigint | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  let bits = 0n;
  for (const part of parts) {
    if (!/^(0|[1-9]\d{0,2})$/.test(part) || Number(part) > 255) return undefined;
    bits = (bits << 8n) | BigInt(part);
  }
  return bits;
}

function parseIpv6(text: string): bigint | undefined {
  const halves = text.split("::");
  // A dotted IPv4 part may only end the address.
  if (halves.length > 2 || (halves.length === 2 && halves[0]?.includes("."))) return undefined;
  const head = groups(halves[0] ?? "");
  const tail = halves.length === 2 ? groups(halves[1] ?? "") : [];
  if (!head || !tail) return undefined;
  const count = head.length + tail.length;
  if (halves.length === 1 ? count !== 8 : count > 7) return undefined;
  let bits = 0n;
  for (const group of [...head, ...new Array<number>(8 - count).fill(0), ...tail]) {
    bits = (bits << 16n) | BigInt(group);
  }
  return bits;
}

/** The 16-bit groups of one side of `::`; a trailing dotted IPv4 part counts as two. */
function groups(text: string): number[] | undefined {
  if (text === "") return [];
  const parts = text.split(":");
  const out: number[] = [];
  for (const [i, part] of parts.entries()) {
    if (i === parts.length - 1 && part.includes(".")) {
      const v4 = parseIpv4(part);
      if (v4 === undefined) return undefined;
      out.push(Number(v4 >> 16n), Number(v4 & 0xffffn));
    } else if (/^[0-9a-fA-F]{1,4}$/.test(part)) {
      out.push(Number.parseInt(part, 16));
    } else {
      return undefined;
    }
  }
  return out;
}
