/** What a CLI command may touch: its output streams and the directory relative paths resolve against. */
export interface CliIO {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  cwd: string;
}
