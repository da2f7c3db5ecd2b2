// Tests of the tablet device type: its keys, and describe against create.
import { pointerTypeTests } from "./_pointer_tests.ts";

pointerTypeTests("tablet", "T1");
