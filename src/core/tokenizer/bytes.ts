/**
 * Byte-level tokenizer: every UTF-8 byte is a token (vocabulary 256). It needs no files,
 * which makes it the tokenizer of the demo model until real tokenizers arrive.
 */
export class ByteTokenizer {
  readonly vocabSize = 256;
  private encoder = new TextEncoder();
  private decoder = new TextDecoder('utf-8', { fatal: false });

  encode(text: string): Int32Array {
    return Int32Array.from(this.encoder.encode(text));
  }

  decode(ids: ArrayLike<number>): string {
    return this.decoder.decode(Uint8Array.from(ids as ArrayLike<number>));
  }
}
