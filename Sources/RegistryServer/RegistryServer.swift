// Embedded registry server (issue 5).
import Registry
