// Whether a tool a test runs is installed, asked before the test so that it is ignored with
// the reason only then; once the tool is there, any failure to run it fails the test.

/** Whether `name` is a command on PATH (`command -v`, POSIX sh). */
export async function onPath(name: string): Promise<boolean> {
  const out = await new Deno.Command("sh", {
    args: ["-c", 'command -v "$1"', "sh", name],
    stdout: "null",
    stderr: "null",
  }).output();
  return out.success;
}
