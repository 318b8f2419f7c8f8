/**
 * Splits the OVSDB byte stream into JSON values.
 *
 * ovsdb-server writes JSON-RPC messages back to back with no length prefix and
 * no separator (RFC 7047 §4; `lib/jsonrpc.c`), so the only way to find where a
 * message ends is to follow its bracket structure. We scan only the ASCII bytes
 * that matter for that (`{ } [ ] " \`) and leave real parsing to the native
 * `JSON.parse`, which is far faster than any parser written in JS. Scanning
 * raw bytes is safe for UTF-8 because every byte of a multi-byte sequence is
 * >= 0x80 and so can never be mistaken for a structural character; decoding
 * happens once per complete message, so a character split across chunks is
 * reassembled before it is decoded.
 */

import { FramingError } from './errors.js';

export interface FramerOptions {
  /** Largest accepted message in bytes. Default 256 MiB: an NB initial dump is about 3 MB per 11k ports. */
  maxMessageBytes?: number;
}

const DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024;
const EXCERPT_BYTES = 40;

const OPEN_BRACE = 0x7b; // {
const CLOSE_BRACE = 0x7d; // }
const OPEN_BRACKET = 0x5b; // [
const CLOSE_BRACKET = 0x5d; // ]
const QUOTE = 0x22; // "
const BACKSLASH = 0x5c; // \
const SPACE = 0x20;
const TAB = 0x09;
const LF = 0x0a;
const CR = 0x0d;

export class JsonStreamFramer {
  readonly #maxMessageBytes: number;

  /** Slices of earlier chunks that belong to the message in progress. */
  #parts: Buffer[] = [];
  #partsBytes = 0;

  /** Nesting depth of the message in progress; 0 means "between messages". */
  #depth = 0;
  #inString = false;
  /** The previous chunk ended with a backslash inside a string. */
  #escape = false;

  #poisoned: FramingError | undefined;

  constructor(options: FramerOptions = {}) {
    const max = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    if (!Number.isSafeInteger(max) || max < 2) {
      // 2 bytes is the smallest possible message ("{}").
      throw new RangeError(`maxMessageBytes must be an integer >= 2, got ${String(max)}`);
    }
    this.#maxMessageBytes = max;
  }

  get pendingBytes(): number {
    return this.#partsBytes;
  }

  push(chunk: Buffer): unknown[] {
    if (this.#poisoned) {
      throw new FramingError(
        `stream is unusable after an earlier framing error: ${this.#poisoned.message}`,
        { cause: this.#poisoned },
      );
    }
    try {
      return this.#scan(chunk);
    } catch (err) {
      // Only our own FramingErrors can come out of #scan; after one, the
      // position in the stream is unknown, so resynchronising would just turn
      // garbage into wrong messages.
      this.#poisoned =
        err instanceof FramingError
          ? err
          : new FramingError('internal framer failure', { cause: err });
      this.#parts = [];
      this.#partsBytes = 0;
      throw this.#poisoned;
    }
  }

  #scan(chunk: Buffer): unknown[] {
    const out: unknown[] = [];
    const len = chunk.length;
    if (len === 0) {
      return out;
    }
    let depth = this.#depth;
    let inString = this.#inString;
    let i = 0;
    // Start of the message in progress within this chunk; for a message that
    // began in an earlier chunk it is 0 and #parts holds the rest.
    let start = 0;
    // Cached positions of the next quote and backslash at or after some
    // earlier point; valid while >= i. Without the cache, a chunk with many
    // strings and no escapes (or one long string full of escapes) would be
    // rescanned to its end over and over, which is quadratic. -1 means none
    // up to the chunk end; -2 means not looked up yet.
    let nextQuote = -2;
    let nextBackslash = -2;

    if (this.#escape) {
      this.#escape = false;
      i = 1;
    }

    while (i < len) {
      if (depth === 0) {
        const b = chunk[i]!;
        if (b === SPACE || b === LF || b === CR || b === TAB) {
          i++;
          continue;
        }
        if (b !== OPEN_BRACE && b !== OPEN_BRACKET) {
          throw new FramingError(
            `expected a JSON object or array at the start of a message, got ${describeByte(b)} ` +
              `(excerpt: ${excerpt(chunk, i)})`,
          );
        }
        start = i;
        depth = 1;
        i++;
        continue;
      }

      if (inString) {
        if (nextQuote !== -1 && nextQuote < i) {
          nextQuote = chunk.indexOf(QUOTE, i);
        }
        if (nextBackslash !== -1 && nextBackslash < i) {
          nextBackslash = chunk.indexOf(BACKSLASH, i);
        }
        const quote = nextQuote;
        if (nextBackslash !== -1 && (quote === -1 || nextBackslash < quote)) {
          // Skip the escaped byte: it may be a quote or a backslash.
          i = nextBackslash + 2;
          if (i > len) {
            this.#escape = true;
            i = len;
          }
          continue;
        }
        if (quote === -1) {
          i = len;
          break;
        }
        inString = false;
        i = quote + 1;
        continue;
      }

      // Tight loop over the structural bytes between strings.
      let ended = false;
      for (; i < len; i++) {
        const b = chunk[i]!;
        if (b === QUOTE) {
          inString = true;
          i++;
          break;
        } else if (b === OPEN_BRACE || b === OPEN_BRACKET) {
          depth++;
        } else if (b === CLOSE_BRACE || b === CLOSE_BRACKET) {
          // Mismatched pairs such as `{]` are left for JSON.parse to reject.
          if (--depth === 0) {
            i++;
            ended = true;
            break;
          }
        }
      }
      if (ended) {
        out.push(this.#finish(chunk, start, i));
      }
    }

    this.#depth = depth;
    this.#inString = inString;
    if (depth > 0) {
      const tail = len - start;
      this.#checkSize(this.#partsBytes + tail);
      if (tail > 0) {
        // A view, not a copy: the chunk stays alive only until the message
        // completes, and concatenation happens once, in #finish.
        this.#parts.push(start === 0 ? chunk : chunk.subarray(start));
        this.#partsBytes += tail;
      }
    }
    return out;
  }

  /** The message spans from #parts through chunk[start, end). */
  #finish(chunk: Buffer, start: number, end: number): unknown {
    const size = this.#partsBytes + (end - start);
    this.#checkSize(size);
    let text: string;
    if (this.#parts.length === 0) {
      text = chunk.toString('utf8', start, end);
    } else {
      this.#parts.push(chunk.subarray(start, end));
      text = Buffer.concat(this.#parts, size).toString('utf8');
      this.#parts = [];
      this.#partsBytes = 0;
    }
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new FramingError(
        `message of ${size} bytes is not valid JSON: ${err instanceof Error ? err.message : String(err)} ` +
          `(excerpt: ${JSON.stringify(text.slice(0, EXCERPT_BYTES))})`,
        { cause: err },
      );
    }
  }

  #checkSize(size: number): void {
    if (size > this.#maxMessageBytes) {
      throw new FramingError(
        `message exceeds the limit of ${this.#maxMessageBytes} bytes (already ${size} bytes buffered)`,
      );
    }
  }
}

function describeByte(b: number): string {
  return b >= 0x20 && b < 0x7f
    ? `'${String.fromCharCode(b)}'`
    : `byte 0x${b.toString(16).padStart(2, '0')}`;
}

function excerpt(chunk: Buffer, at: number): string {
  const end = Math.min(chunk.length, at + EXCERPT_BYTES);
  const text = chunk.toString('utf8', at, end);
  return JSON.stringify(end < chunk.length ? `${text}…` : text);
}
