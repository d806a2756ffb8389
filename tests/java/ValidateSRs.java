// pixelmed's DicomSRValidator over many SR files in one JVM: its command line takes one file, and starting
// the JVM and building the validator (compiling its template XSLT) is most of the ~10 s a run takes; in one
// JVM an SR takes about 2.5 s, nearly all of it one thread in the validator's XSLT. So the files are shared
// out among threads (-Dthreads=N, default the machine's cores), each with its own validator; the reports
// are printed in the order of the arguments, each after a line "=== <path>", exactly as one thread would.
// Run as a single-file program: java -cp pixelmed.jar ValidateSRs.java SR1.dcm SR2.dcm ...
import com.pixelmed.validate.DicomSRValidator;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

public class ValidateSRs {
    private static final ThreadLocal<DicomSRValidator> VALIDATOR = ThreadLocal.withInitial(() -> {
        try {
            return new DicomSRValidator();
        } catch (Exception e) {
            throw new IllegalStateException("cannot build pixelmed's DicomSRValidator", e);
        }
    });

    public static void main(String[] args) throws Exception {
        int cores = Runtime.getRuntime().availableProcessors();
        int threads = Math.max(1, Math.min(args.length, Integer.getInteger("threads", cores)));
        ExecutorService pool = Executors.newFixedThreadPool(threads);
        try {
            List<Future<String>> reports = new ArrayList<>();
            for (String path : args) {
                reports.add(pool.submit(() -> VALIDATOR.get().validate(path)));
            }
            for (int i = 0; i < args.length; i++) {
                System.out.println("=== " + args[i]);
                System.out.println(reports.get(i).get());
            }
        } finally {
            pool.shutdownNow();
        }
    }
}
