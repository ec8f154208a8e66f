// The prebuilt llama.cpp packages node-llama-cpp loads for a platform and a GPU choice, so that a runner started
// without them names what to install. An install of Edgeward brings the CPU builds for Linux x64 and arm64 and for
// macOS; the GPU builds and other platforms' are opt-in (docs/install.md).

/** `--gpu`: off (the default) never probes for a GPU; auto uses an installed GPU build when a GPU is present. */
export const GPU_CHOICES = ["off", "auto", "cuda", "vulkan", "metal"] as const;
export type GpuChoice = (typeof GPU_CHOICES)[number];

/**
 * The packages holding the binaries for `gpu` on this platform (the first one is required; node-llama-cpp uses the
 * CUDA "-ext" package when it is there too), or null when node-llama-cpp has no prebuilt binary for the combination.
 * Mirrors node-llama-cpp's own choice (getPrebuiltBinariesPackageDirectoryForBuildOptions).
 */
export function prebuiltPackages(platform: string, arch: string, gpu: Exclude<GpuChoice, "auto">): string[] | null {
  const names = ((): string[] | null => {
    if (platform === "darwin") {
      if (arch === "arm64" && (gpu === "off" || gpu === "metal")) return ["mac-arm64-metal"];
      if (arch === "x64" && gpu === "off") return ["mac-x64"];
      return null;
    }
    const os = platform === "linux" ? "linux" : platform === "win32" ? "win" : null;
    if (os === null) return null;
    if (arch === "x64") {
      if (gpu === "off") return [`${os}-x64`];
      if (gpu === "cuda") return [`${os}-x64-cuda`, `${os}-x64-cuda-ext`];
      if (gpu === "vulkan") return [`${os}-x64-vulkan`];
      return null;
    }
    if (gpu !== "off") return null;
    if (arch === "arm64") return [`${os}-arm64`];
    if (arch === "arm" && os === "linux") return ["linux-armv7l"];
    return null;
  })();
  return names === null ? null : names.map((n) => `@node-llama-cpp/${n}`);
}

/** What to tell the operator when node-llama-cpp found no binary for `gpu` (at its version, `version`). */
export function missingBinaryMessage(platform: string, arch: string, gpu: GpuChoice, version: string): string {
  const where = `${platform}-${arch}${gpu === "off" ? "" : ` with --gpu ${gpu}`}`;
  const packages = prebuiltPackages(platform, arch, gpu === "auto" ? "off" : gpu);
  if (packages === null) return `no prebuilt llama.cpp binary exists for ${where}; use another runner (docs/install.md)`;
  const [required, ...extra] = packages.map((p) => `${p}@${version}`);
  return `no llama.cpp binary for ${where}: install ${required}${extra.length > 0 ? ` (and ${extra.join(", ")})` : ""} beside edgeward (docs/install.md)`;
}
