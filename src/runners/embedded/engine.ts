/**
 * One GGUF model on llama.cpp (node-llama-cpp), one context sequence, and a queue
 * in front of it: generations run one at a time, each cancellable by an AbortSignal.
 */
import { availableParallelism } from "node:os";
import { getLlama, getModuleVersion, LlamaChat, LlamaCompletion, LlamaLogLevel, NoBinaryFoundError } from "node-llama-cpp";
import type { ChatHistoryItem, Llama, LlamaContext, LlamaContextSequence, LlamaModel, Token } from "node-llama-cpp";
import { RunnerRequestError } from "./openai-request.ts";
import { missingBinaryMessage, type GpuChoice } from "./prebuilt.ts";
import { StopScanner } from "./stop-scanner.ts";
import type { ChatMessage, ChatRequest, CompletionRequest, SamplingOptions } from "./openai-request.ts";

export const DEFAULT_MAX_TOKENS = 16;

export interface EngineOptions {
  modelPath: string;
  threads?: number;
  contextSize?: number;
  /** "off" (the default) uses the CPU build; a GPU build must be installed beside edgeward (docs/install.md). */
  gpu?: GpuChoice;
}

export interface GenerationResult {
  text: string;
  finishReason: "stop" | "length";
  promptTokens: number;
  completionTokens: number;
  /** True when the caller's signal ended the generation early. */
  aborted: boolean;
}

export interface GenerationHooks {
  /** Called once the prompt is tokenized and the request has the sequence to itself. */
  onStart?: (promptTokens: number) => void;
  onText?: (text: string) => void;
  signal?: AbortSignal;
}

/** More threads than free cores makes llama.cpp spin and slow down sharply; leave one core to the rest. */
export function defaultThreads(): number {
  return Math.max(1, Math.min(8, availableParallelism() - 1));
}

function toHistory(messages: readonly ChatMessage[]): ChatHistoryItem[] {
  const history: ChatHistoryItem[] = messages.map((m): ChatHistoryItem => {
    if (m.role === "system") return { type: "system", text: m.content };
    if (m.role === "user") return { type: "user", text: m.content };
    return { type: "model", response: [m.content] };
  });
  // LlamaChat continues the last model response; an empty one asks for a fresh reply.
  history.push({ type: "model", response: [] });
  return history;
}

export class EmbeddedEngine {
  readonly contextSize: number;
  private readonly llama: Llama;
  private readonly model: LlamaModel;
  private readonly context: LlamaContext;
  private readonly sequence: LlamaContextSequence;
  private readonly chat: LlamaChat;
  private readonly completion: LlamaCompletion;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly counts = { completed: 0, aborted: 0, failed: 0 };
  private closed = false;

  private constructor(llama: Llama, model: LlamaModel, context: LlamaContext) {
    this.llama = llama;
    this.model = model;
    this.context = context;
    this.contextSize = context.contextSize;
    this.sequence = context.getSequence();
    this.chat = new LlamaChat({ contextSequence: this.sequence, autoDisposeSequence: false });
    this.completion = new LlamaCompletion({ contextSequence: this.sequence, autoDisposeSequence: false });
  }

  static async load(opts: EngineOptions): Promise<EmbeddedEngine> {
    // Never a build or download: a prebuilt binding is used as installed; no GPU probing unless asked for.
    const gpu = opts.gpu ?? "off";
    const llama = await getLlama({ gpu: gpu === "off" ? false : gpu, build: "never", progressLogs: false, logLevel: LlamaLogLevel.error }).catch(
      async (err: unknown) => {
        if (!(err instanceof NoBinaryFoundError)) throw err;
        throw new Error(missingBinaryMessage(process.platform, process.arch, gpu, await getModuleVersion()));
      },
    );
    try {
      const model = await llama.loadModel({ modelPath: opts.modelPath });
      try {
        const context = await model.createContext({
          contextSize: opts.contextSize ?? Math.min(model.trainContextSize, 4096),
          threads: opts.threads ?? defaultThreads(),
          sequences: 1,
        });
        return new EmbeddedEngine(llama, model, context);
      } catch (err) {
        await model.dispose();
        throw err;
      }
    } catch (err) {
      await llama.dispose();
      throw err;
    }
  }

  /** How generations ended so far; an operator's view of cancellations and failures. */
  stats(): { completed: number; aborted: number; failed: number } {
    return { ...this.counts };
  }

  generate(req: ChatRequest | CompletionRequest, hooks: GenerationHooks = {}): Promise<GenerationResult> {
    const run = this.queue
      .then(() => this.generateNow(req, hooks))
      .then(
        (result) => {
          this.counts[result.aborted ? "aborted" : "completed"]++;
          return result;
        },
        (err: unknown) => {
          if (!(err instanceof RunnerRequestError)) this.counts.failed++;
          throw err;
        },
      );
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async generateNow(req: ChatRequest | CompletionRequest, hooks: GenerationHooks): Promise<GenerationResult> {
    if (this.closed) throw new RunnerRequestError(503, "closed", "the runner is shutting down", "server_error");
    if (hooks.signal?.aborted) {
      return { text: "", finishReason: "stop", promptTokens: 0, completionTokens: 0, aborted: true };
    }
    let completionTokens = 0;
    // Stop sequences are matched here on the decoded text, exactly as OpenAI defines them
    // (the output ends just before the first occurrence), then the generation is cut short.
    const scanner = new StopScanner(req.stop);
    const stopAtSequence = new AbortController();
    let text = "";
    const emit = (piece: string): void => {
      if (piece === "") return;
      text += piece;
      hooks.onText?.(piece);
    };
    const signal = hooks.signal ? AbortSignal.any([hooks.signal, stopAtSequence.signal]) : stopAtSequence.signal;
    const common = (promptTokens: number) => {
      const room = this.contextSize - promptTokens;
      if (room < 1) {
        throw new RunnerRequestError(
          400,
          "context_length_exceeded",
          `the prompt is ${promptTokens} tokens; this model's context holds ${this.contextSize}`,
        );
      }
      hooks.onStart?.(promptTokens);
      return {
        maxTokens: Math.min(req.maxTokens ?? DEFAULT_MAX_TOKENS, room),
        ...sampling(req),
        signal,
        stopOnAbortSignal: true,
        onTextChunk: (chunk: string) => {
          emit(scanner.push(chunk));
          if (scanner.stopped) stopAtSequence.abort();
        },
        onToken: (tokens: Token[]) => {
          completionTokens += tokens.length;
        },
      };
    };

    let promptTokens: number;
    let stopReason: string;
    if (req.kind === "completion") {
      const tokens = this.model.tokenize(req.prompt, false, "trimLeadingSpace");
      const bos = this.model.tokens.bos;
      promptTokens = tokens.length + (bos !== null && this.model.tokens.shouldPrependBosToken ? 1 : 0);
      const options = common(promptTokens);
      const result = await this.completion.generateCompletionWithMeta(tokens, { ...options, disableContextShift: true });
      stopReason = result.metadata.stopReason;
    } else {
      const history = toHistory(req.messages);
      const { contextText } = this.chat.chatWrapper.generateContextState({ chatHistory: history });
      promptTokens = contextText.tokenize(this.model.tokenizer).length;
      const result = await this.chat.generateResponse(history, common(promptTokens));
      stopReason = result.metadata.stopReason;
    }
    emit(scanner.flush());
    return {
      text,
      finishReason: stopReason === "maxTokens" && !scanner.stopped ? "length" : "stop",
      promptTokens,
      completionTokens,
      aborted: stopReason === "abort" && !scanner.stopped,
    };
  }

  /** Waits for the generation in flight (callers abort it first), then frees the model. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.queue;
    this.chat.dispose({ disposeSequence: false });
    this.completion.dispose({ disposeSequence: false });
    this.sequence.dispose();
    await this.context.dispose();
    await this.model.dispose();
    await this.llama.dispose();
  }
}

function sampling(req: SamplingOptions): { temperature: number; topP?: number; seed?: number } {
  return {
    temperature: req.temperature,
    ...(req.topP !== undefined ? { topP: req.topP } : {}),
    // OpenAI takes any integer seed; llama.cpp's sampler takes a u32.
    ...(req.seed !== undefined ? { seed: ((req.seed % 2 ** 32) + 2 ** 32) % 2 ** 32 } : {}),
  };
}
