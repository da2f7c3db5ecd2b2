// Tests of the mouse device type: its keys, and describe against create.
import { pointerTypeTests } from "./_pointer_tests.ts";

pointerTypeTests("mouse", "M1");
